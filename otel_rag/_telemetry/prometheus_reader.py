"""Our `prometheus` metric reader: the stock one, except that a port it cannot bind is a warning, not a crash.

Selected by local_prometheus.metric_exporters_for_sdk when OTEL_METRICS_EXPORTER names `prometheus`; kept apart so
that prometheus_client is imported only when the in-process endpoint is used.
"""

from __future__ import annotations

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import start_http_server

from otel_rag._config.settings import active_settings
from otel_rag._telemetry.prometheus_server import warn_later

__all__ = ["LocalPrometheusReader"]


class LocalPrometheusReader(PrometheusMetricReader):
    """The stock Prometheus reader, whose endpoint failing to bind is a warning instead of a failed start-up.

    Binding here (rather than checking the port first) has no race between two workers starting together.
    """

    def __init__(self) -> None:
        super().__init__()
        settings = active_settings()
        host, port = settings.prometheus_host, settings.prometheus_port
        try:
            start_http_server(port=int(port), addr=host)
        except OSError as error:
            warn_later(
                f"OTEL_EXPORTER_PROMETHEUS_PORT {port} on {host} cannot be served ({error.strerror}; another worker "
                "or program has it): this process's metrics are not exposed. Multi-worker apps should send metrics "
                "to the Collector (OTEL_METRICS_EXPORTER=otlp)."
            )
