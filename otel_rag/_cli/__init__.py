"""The otel-rag command line."""
