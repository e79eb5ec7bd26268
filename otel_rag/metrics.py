"""Every metric instrument otel-rag records, in one place.

Names follow the OTel semantic conventions where they exist (`http.server.request.duration`); ours live under
`rag.` and `otel_rag.`. Instruments are created from the global MeterProvider through the API's proxy, so this
module can be imported before the SDK is configured.
"""

from __future__ import annotations

from opentelemetry import metrics

__all__ = ["HTTP_DURATION_BUCKETS", "http_server_request_duration"]

_meter = metrics.get_meter("otel_rag")

# The bucket boundaries the HTTP semantic conventions recommend, in seconds.
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

http_server_request_duration = _meter.create_histogram(
    "http.server.request.duration",
    unit="s",
    description="Duration of HTTP server requests.",
    explicit_bucket_boundaries_advisory=list(HTTP_DURATION_BUCKETS),
)
