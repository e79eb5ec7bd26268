"""Multi-process servers: every worker exports, nothing is exported twice (SDK state re-created per worker)."""

from __future__ import annotations

import collections
from typing import Any

import httpx
import pytest

from tests.support.otlp import OtlpReceiver
from tests.support.processes import AppProcess, base_env, launch_gunicorn, launch_uvicorn

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`

REQUESTS = 60


def _drive(app: AppProcess, otlp: OtlpReceiver) -> list[str]:
    app.wait_ready()
    trace_ids = []
    # New connections each time, so the kernel spreads requests over the workers.
    for i in range(REQUESTS):
        response = httpx.get(app.url + "/hello", params={"name": f"n{i}"}, headers={"Connection": "close"})
        assert response.status_code == 200
        trace_ids.append(response.headers["x-trace-id"])
    wanted = set(trace_ids)
    otlp.wait_for(lambda r: wanted <= {s["trace_id"] for s in r.spans if s["name"] == "GET /hello"})
    otlp.wait_for(lambda r: len({m["resource"].get("service.instance.id") for m in r.metrics}) >= 2)
    return trace_ids


def _assert_each_request_exported_once(otlp: OtlpReceiver, trace_ids: list[str]) -> None:
    wanted = set(trace_ids)
    server_spans = [s for s in otlp.spans if s["name"] == "GET /hello" and s["trace_id"] in wanted]
    per_trace = collections.Counter(s["trace_id"] for s in server_spans)
    assert set(per_trace.values()) == {1}, "a request's span was exported more than once"
    assert len(per_trace) == REQUESTS
    instances = {s["resource"]["service.instance.id"] for s in server_spans}
    assert len(instances) == 2, f"expected spans from two workers, got instances {instances}"
    # Metrics: each worker reports its own requests; together they add up to exactly what was sent.
    latest: dict[str, int] = {}
    for batch in otlp.metrics:
        if batch["name"] != "http.server.request.duration":
            continue
        instance = batch["resource"]["service.instance.id"]
        latest[instance] = sum(p["count"] for p in batch["points"] if p["attributes"].get("http.route") == "/hello")
    assert set(latest) == instances
    assert sum(latest.values()) >= REQUESTS  # readiness probes hit /hello too, at most a few
    assert sum(latest.values()) <= REQUESTS + 50


def test_uvicorn_with_two_workers(otlp: OtlpReceiver) -> None:
    env = base_env(OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint)
    with launch_uvicorn(env, "--workers", "2") as app:
        trace_ids = _drive(app, otlp)
        otlp.wait_for(lambda r: _metric_total(r) >= REQUESTS)
        _assert_each_request_exported_once(otlp, trace_ids)
    lines = app.json_lines()
    assert len({line["trace_id"] for line in lines if line["event"] == "greeting.composed"}) >= REQUESTS


def test_gunicorn_with_uvicorn_workers(otlp: OtlpReceiver) -> None:
    env = base_env(OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint)
    with launch_gunicorn(env, workers=2) as app:
        trace_ids = _drive(app, otlp)
        otlp.wait_for(lambda r: _metric_total(r) >= REQUESTS)
        _assert_each_request_exported_once(otlp, trace_ids)
    lines = app.json_lines()  # gunicorn's own log lines are JSON too
    assert any(line["logger"].startswith("gunicorn") for line in lines)
    assert any(line["logger"] == "uvicorn.error" for line in lines)


def _metric_total(receiver: OtlpReceiver) -> int:
    latest: dict[str, int] = {}
    for batch in receiver.metrics:
        if batch["name"] == "http.server.request.duration":
            latest[batch["resource"]["service.instance.id"]] = sum(
                p["count"] for p in batch["points"] if p["attributes"].get("http.route") == "/hello"
            )
    return sum(latest.values())


def test_gunicorn_workers_write_to_postgres_once_each(store: Any) -> None:
    from tests.support.postgres import scratch_dir

    env = base_env(
        OTEL_TRACES_EXPORTER="postgres",
        OTEL_LOGS_EXPORTER="postgres",
        OTEL_METRICS_EXPORTER="none",
        OTEL_RAG_POSTGRES_DSN=store.dsn("rag_writer"),
        OTEL_RAG_SPOOL_DIR=str(scratch_dir("spool-")),
    )
    with launch_gunicorn(env, workers=2) as app:
        app.wait_ready()
        trace_ids = []
        for i in range(REQUESTS):
            response = httpx.get(app.url + "/hello", params={"name": f"n{i}"}, headers={"Connection": "close"})
            trace_ids.append(response.headers["x-trace-id"])
    # gunicorn's shutdown ran every worker's atexit flush.
    rows = store.scalar(
        "SELECT json_agg(json_build_object('t', trace_id, 'i', resource->>'service.instance.id')) "
        "FROM otel_rag.spans WHERE name = 'GET /hello' AND trace_id = ANY(%s)",
        trace_ids,
    )
    per_trace = collections.Counter(row["t"] for row in rows)
    assert len(per_trace) == REQUESTS and set(per_trace.values()) == {1}
    assert len({row["i"] for row in rows}) == 2
    logged = store.scalar(
        "SELECT count(DISTINCT trace_id) FROM otel_rag.logs WHERE body = 'greeting.composed' AND trace_id = ANY(%s)",
        trace_ids,
    )
    assert logged == REQUESTS
