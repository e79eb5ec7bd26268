"""Helpers for testing code instrumented with otel-rag (public API).

`capture_telemetry()` installs the real OpenTelemetry SDK with in-memory exporters as the process's providers, so a
test can assert on the spans, log records and metric points its code produced, exactly as they would be exported.
`free_port()` gives a free TCP port on 127.0.0.1 for a server a test starts. With otel-rag installed, pytest also
has the fixture `captured_telemetry` (the same capture, cleared for each test).
"""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["CapturedTelemetry", "capture_telemetry", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CapturedTelemetry:
    """The real OTel SDK with in-memory exporters, installed as the global tracer, meter and logger providers.

    The SDK lets a process set each global provider once, so there is one per process: use `capture_telemetry()`.
    """

    def __init__(self, service_name: str = "unit-tests") -> None:
        from opentelemetry import _logs, metrics, trace
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from otel_rag._telemetry.tracing import UserSpanProcessor

        resource = Resource.create({"service.name": service_name})
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(UserSpanProcessor())
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        trace.set_tracer_provider(self.tracer_provider)
        self.metric_reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[self.metric_reader]))
        self.logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        _logs.set_logger_provider(self.logger_provider)

    def clear(self) -> None:
        """Forget the spans and log records captured so far (metrics are cumulative: compare before and after)."""
        self.spans.clear()
        self.logs.clear()

    def finished(self) -> list[Any]:
        """The finished spans (SDK ReadableSpans), oldest first."""
        return list(self.spans.get_finished_spans())

    def span(self, name: str) -> Any:
        """The one finished span called `name`; an AssertionError names the spans there are when it is not one."""
        matching = [span for span in self.finished() if span.name == name]
        if len(matching) != 1:
            names = sorted({span.name for span in self.finished()})
            raise AssertionError(f"{len(matching)} spans named {name!r}; finished spans: {names}")
        return matching[0]

    def log_records(self) -> list[Any]:
        """The emitted OTel log records (SDK ReadableLogRecords: `.log_record.body`, `.log_record.attributes`)."""
        return list(self.logs.get_finished_logs())

    def metric_points(self, name: str) -> list[Any]:
        """The current data points of the instrument called `name` (empty when it recorded nothing)."""
        data = self.metric_reader.get_metrics_data()
        points: list[Any] = []
        for resource_metrics in data.resource_metrics if data else []:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points

    def metric_total(self, name: str, **attributes: str) -> float:
        """The sum of a counter (or the count of a histogram) over the points with these attributes."""
        return float(
            sum(
                point.value if hasattr(point, "value") else point.count
                for point in self.metric_points(name)
                if all(point.attributes.get(key) == value for key, value in attributes.items())
            )
        )


_captured: CapturedTelemetry | None = None


def capture_telemetry() -> CapturedTelemetry:
    """The process's captured telemetry, installed on first call, with spans and log records cleared."""
    global _captured
    if _captured is None:
        _captured = CapturedTelemetry()
    _captured.clear()
    return _captured
