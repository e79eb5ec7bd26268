"""Configuration: the settings catalogue, fail-closed start-up and the launcher's hooks."""
