"""`otel-rag health`: the verdict's rules, then the command on a real store and a real Prometheus.

The store holds the last 15 minutes of a service (requests on two routes, some failing, evaluated answers, costs),
written as rows; Prometheus scrapes a small endpoint that shows a sink spooling and dropping records, and evaluates
the shipped alert rules, so the command's pipeline figures and alerts come from the real HTTP API.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from otel_rag._store.health import DEGRADED, DOWN, HEALTHY, Pipeline, RouteLatency, StoreHealth, judge
from tests.support.plans import plan, real_seq_scans, seed_two_days

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
START = NOW - dt.timedelta(minutes=15)


def _store(**figures: Any) -> StoreHealth:
    values: dict[str, Any] = {"start": START, "end": NOW, "requests": 100, "errors": 1, "newest_row": NOW}
    return StoreHealth(**(values | figures))


@pytest.mark.parametrize(
    ("store", "pipeline", "status", "reason"),
    [
        (_store(), None, HEALTHY, None),
        (_store(errors=6), None, DEGRADED, "errors 6.0% of 100 requests (over 5 %)"),
        (_store(requests=10, errors=1), None, HEALTHY, None),  # 10 % of too few requests to say
        (_store(requests=10, errors=5), None, DOWN, "errors 50% of 10 requests"),
        (_store(routes=[RouteLatency("api", "/ask", 50, 2500.0)]), None, DEGRADED, "p95 of /ask (api) 2.5 s"),
        (_store(answers=50, hallucinations=6), None, DEGRADED, "hallucinations 12.0% of 50 answers"),
        (_store(answers=5, hallucinations=3), None, HEALTHY, None),
        (_store(requests=0, errors=0, newest_row=START - dt.timedelta(minutes=30)), None, DEGRADED, "no telemetry"),
        (_store(requests=0, errors=0, newest_row=None), None, DOWN, "no telemetry in the store for a day"),
        (_store(), Pipeline(figures={"spooled_bytes": 2048.0}), DEGRADED, "2048 bytes waiting"),
        (_store(), Pipeline(figures={"dropped": 3.0}), DEGRADED, "3 records dropped"),
        (_store(), Pipeline(alerts=[{"name": "OtelRagRecordsDropped", "severity": "page"}]), DOWN, "alert"),
        (_store(), Pipeline(alerts=[{"name": "OtelRagSpooling", "severity": "ticket"}]), DEGRADED, "alert"),
        (_store(), Pipeline(error="connection refused"), DEGRADED, "Prometheus not answering"),
    ],
)
def test_the_verdict_follows_the_alert_rules_thresholds(
    store: StoreHealth, pipeline: Pipeline | None, status: int, reason: str | None
) -> None:
    verdict = judge(store, pipeline, NOW)
    assert verdict.status == status, verdict.reasons
    if reason is None:
        assert verdict.reasons == []
    else:
        assert any(reason in text for text in verdict.reasons), verdict.reasons


# -- the command, on a real store and a real Prometheus -------------------------------------------------------------


def _seed(dsn: str, now: dt.datetime) -> None:
    """In the last 15 minutes: 40 requests to /ask (4 failing, p95 near 2.9 s) and 10 to /documents (fast), 20
    evaluated answers (3 hallucinated), $0.05 of model calls; one older request outside the window."""
    from otel_rag._store.migrate import ensure_partitions

    rows = []
    for number in range(50):
        route = "/ask" if number < 40 else "/documents"
        duration = 100.0 + number * 70 if route == "/ask" else 50.0
        start = now - dt.timedelta(minutes=14) + dt.timedelta(seconds=number)
        rows.append((start, duration, f"{number:032x}", route, "ERROR" if number < 4 else "UNSET"))
    rows.append((now - dt.timedelta(hours=2), 10.0, "f" * 32, "/ask", "ERROR"))
    with psycopg.connect(dsn, autocommit=True) as connection:
        ensure_partitions(connection, "otel_rag", (now - dt.timedelta(days=1)).date(), now.date())
        for start, duration, trace_id, route, status in rows:
            connection.execute(
                "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, service_name, name,"
                " kind, status, attributes, parent_remote) VALUES (%s, %s, %s, %s, %s, 'rag-api', %s, 'SERVER', %s,"
                " %s, false)",
                (
                    start,
                    start + dt.timedelta(milliseconds=duration),
                    duration,
                    trace_id,
                    trace_id[:16],
                    f"POST {route}",
                    status,
                    Jsonb({"http.route": route}),
                ),
            )
            connection.execute(
                "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, parent_span_id,"
                " service_name, name, kind, status, cost_usd) VALUES (%s, %s, 5, %s, %s, %s, 'rag-api',"
                " 'chat gpt-4o-mini', 'CLIENT', 'UNSET', 0.001)",
                (start, start, trace_id, "b" + trace_id[17:], "a" + trace_id[17:]),
            )
        for number in range(20):
            label = "hallucinated" if number < 3 else "grounded"
            connection.execute(
                "INSERT INTO otel_rag.logs (time, record_id, trace_id, service_name, severity, severity_number,"
                " body, attributes) VALUES (%s, %s, %s, 'rag-api', 'INFO', 9, 'gen_ai.evaluation.result', %s)",
                (
                    now - dt.timedelta(minutes=10),
                    uuid.uuid4(),
                    f"{number:032x}",
                    Jsonb({"gen_ai.evaluation.name": "hallucination", "gen_ai.evaluation.score.label": label}),
                ),
            )


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    from otel_rag._cli.main import main

    status = main(["health", "--json", *args])
    return status, json.loads(capsys.readouterr().out)


@pytest.mark.integration
def test_the_command_reads_the_window_from_the_store_and_says_degraded(
    store: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = dt.datetime.now(dt.UTC)
    _seed(store.dsn(), now)
    monkeypatch.setenv("OTEL_RAG_POSTGRES_DSN", store.dsn("rag_reader"))
    status, report = _run(capsys)
    assert (report["requests"], report["errors"], report["answers"], report["hallucinations"]) == (50, 4, 20, 3)
    assert report["requests_per_minute"] == pytest.approx(50 / 15, rel=0.01)
    assert report["cost_per_hour_usd"] == pytest.approx(0.05 * 4, rel=0.01)
    routes = {route["route"]: route for route in report["routes"]}
    durations = sorted(100.0 + n * 70 for n in range(40))
    position = 0.95 * 39  # percentile_cont(0.95): linear between the two nearest ranks
    expected = durations[int(position)] + (durations[int(position) + 1] - durations[int(position)]) * (position % 1)
    assert routes["/ask"]["p95_ms"] == pytest.approx(expected)
    assert routes["/documents"]["requests"] == 10
    assert report["freshness_s"] < 15 * 60
    assert status == DEGRADED and report["status"] == "DEGRADED"
    assert any("p95 of /ask" in reason for reason in report["reasons"])  # 2.8 s over 2 s
    assert any("hallucinations 15.0% of 20 answers" in reason for reason in report["reasons"])
    assert report["pipeline"] is None
    from otel_rag._cli.main import main

    assert main(["health"]) == DEGRADED
    text = capsys.readouterr().out
    assert "DEGRADED" in text and "requests    50 (3.3/min), errors 8.0%" in text and "why: " in text
    assert main(["health", "--service", "another-service", "--json"]) == DOWN  # nothing of it for a day
    capsys.readouterr()


@pytest.mark.integration
def test_an_unreachable_store_is_down(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from otel_rag.testing import free_port

    monkeypatch.setenv("OTEL_RAG_POSTGRES_DSN", f"postgresql://nobody:x@127.0.0.1:{free_port()}/none")
    status, report = _run(capsys)
    assert status == DOWN and "the store cannot be reached" in report["reasons"][0]


class _SinkMetrics:
    """A scrape target that shows a sink spooling 4 KiB and dropping one more record at every scrape."""

    def __init__(self) -> None:
        self.dropped = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.dropped += 1
                body = (
                    "# TYPE otel_rag_sink_spool_size_bytes gauge\n"
                    'otel_rag_sink_spool_size_bytes{job="rag-api"} 4096\n'
                    "# TYPE otel_rag_sink_dropped_total counter\n"
                    f'otel_rag_sink_dropped_total{{job="rag-api",reason="spool_full"}} {owner.dropped}\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink_metrics() -> Iterator[_SinkMetrics]:
    metrics = _SinkMetrics()
    yield metrics
    metrics.close()


@pytest.mark.integration
def test_the_pipeline_and_the_alerts_come_from_prometheus(
    store: Any,
    sink_metrics: _SinkMetrics,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.support.stack import Prometheus, wait_until

    now = dt.datetime.now(dt.UTC)
    _seed(store.dsn(), now)
    prometheus = Prometheus(tmp_path, {"otel-collector": sink_metrics.address})
    try:
        wait_until(lambda: prometheus.query("ALERTS{alertname='OtelRagRecordsDropped'}"), 60, "the drop alert")
        monkeypatch.setenv("OTEL_RAG_POSTGRES_DSN", store.dsn("rag_reader"))
        monkeypatch.setenv("OTEL_RAG_PROMETHEUS_URL", prometheus.url)
        status, report = _run(capsys)
    finally:
        prometheus.stop()
    pipeline = report["pipeline"]
    assert pipeline["error"] is None
    assert pipeline["figures"]["spooled_bytes"] == 4096 and pipeline["figures"]["dropped"] > 0
    assert {"name": "OtelRagRecordsDropped", "severity": "page"} in pipeline["alerts"]
    assert status == DOWN  # a paging alert is firing
    monkeypatch.setenv("OTEL_RAG_PROMETHEUS_URL", prometheus.url)  # now stopped: said, and degraded at least
    status, report = _run(capsys)
    assert status >= DEGRADED and report["pipeline"]["error"]


@pytest.mark.integration
def test_the_health_queries_read_only_the_window_through_the_indexes(store: Any) -> None:
    from otel_rag._store.health import health_sql

    seed_two_days(store)
    now = dt.datetime.now(dt.UTC)
    params = {"start": now - dt.timedelta(minutes=15), "end": now, "service": "svc", "since": now}
    for service in (False, True):
        for name, query in health_sql("otel_rag", service).items():
            text = plan(store, query, params)
            scans = real_seq_scans(text)
            assert not scans, f"{name}:\n{text}"
