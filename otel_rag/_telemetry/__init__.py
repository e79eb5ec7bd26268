"""The SDK pipeline: logs, spans, metrics, redaction and the exporters' encoders."""
