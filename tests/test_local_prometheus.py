"""The in-process Prometheus endpoint: served for one process, warned about with workers, never a crash."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from otel_rag._telemetry.prometheus_reader import LocalPrometheusReader
from otel_rag._telemetry.prometheus_server import metric_exporters_for_sdk, take_warnings, worker_count
from otel_rag.testing import free_port
from tests.support.processes import base_env, launch_uvicorn

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["uvicorn", "app:app"], {}, 1),
        (["uvicorn", "app:app", "--workers", "4"], {}, 4),
        (["uvicorn", "app:app", "--workers=3"], {}, 3),
        (["gunicorn", "-w", "2", "app:app"], {}, 2),
        (["gunicorn", "app:app"], {"GUNICORN_CMD_ARGS": "--workers 5 --bind :80"}, 5),
        (["uvicorn", "app:app"], {"WEB_CONCURRENCY": "6"}, 6),
        (["uvicorn", "app:app", "--workers", "many"], {}, 1),
    ],
)
def test_worker_count_reads_the_server_command_line(argv: list[str], environ: dict[str, str], expected: int) -> None:
    assert worker_count(argv, environ) == expected


def test_one_process_gets_our_reader_and_other_exporters_stay() -> None:
    argv = ["uvicorn", "app:app"]
    assert metric_exporters_for_sdk(["otlp", "prometheus"], argv, {}) == (["otlp", "otel_rag_prometheus"], [])
    assert metric_exporters_for_sdk(["otlp"], ["uvicorn", "app:app", "-w", "4"], {}) == (["otlp"], [])


def test_a_supervisor_of_workers_leaves_the_endpoint_to_them() -> None:
    supervisor, warned = metric_exporters_for_sdk(["otlp", "prometheus"], ["gunicorn", "-w", "2", "app:app"], {})
    alone, _ = metric_exporters_for_sdk(["prometheus"], ["uvicorn", "app:app", "--workers", "3"], {})
    assert supervisor == ["otlp"] and alone == ["none"]
    assert len(warned) == 1 and "runs 2 workers" in warned[0] and "OTEL_METRICS_EXPORTER=otlp" in warned[0]


def test_multiprocessing_helpers_never_take_the_port() -> None:
    tracker = ["/usr/bin/python3", "-c", "from multiprocessing.resource_tracker import main;main(6)"]
    assert metric_exporters_for_sdk(["prometheus"], tracker, {}) == (["none"], [])


def test_a_taken_port_is_a_warning_not_a_crash(use_settings: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        use_settings(
            OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1", OTEL_EXPORTER_PROMETHEUS_PORT=str(taken.getsockname()[1])
        )
        take_warnings()
        LocalPrometheusReader()
    warned = take_warnings()
    assert len(warned) == 1 and "cannot be served" in warned[0] and "OTEL_METRICS_EXPORTER=otlp" in warned[0]
    assert take_warnings() == []


def test_two_uvicorn_workers_start_and_one_serves_metrics() -> None:
    port = free_port()
    env = base_env(
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(port),
    )
    with launch_uvicorn(env, "--workers", "2") as app:
        app.wait_ready()
        for _ in range(20):
            assert httpx.get(app.url + "/hello").status_code == 200
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'otel_scope_name="otel_rag.http"' in scraped  # one worker's share: the requests went to either
        app.stop()
        lines = app.json_lines()
    warnings = [line["event"] for line in lines if line.get("level") == "warning"]
    assert sum("runs 2 workers" in event for event in warnings) == 1, "the supervisor warns, once"
    assert sum("cannot be served" in event for event in warnings) == 1, "one worker serves, the other one warns"
