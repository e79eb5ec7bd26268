"""The query tools on seeded data (Python API and CLI), and that they use the indexes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from typing import Any

import psycopg
import pytest
from psycopg import sql

from otel_rag._store import queries, render
from tests.support.plans import plan, real_seq_scans
from tests.support.postgres import Database
from tests.support.processes import BIN, base_env
from tests.support.seed import Seeded


@pytest.fixture
def seeded(store: Database) -> Seeded:
    return Seeded(store)


def test_debug_trace_builds_the_tree_with_logs_and_totals(seeded: Seeded) -> None:
    report = queries.debug_trace(seeded.reader, seeded.trace_id.upper())
    assert [(s.name, s.depth) for s in report.spans] == [
        ("POST /documents", 0),
        ("rag.parse", 1),
        ("rag.chunk", 1),
        ("rag.embed", 1),
        ("rag.generate", 1),
    ]
    offsets = [s.offset_ms for s in report.spans]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert report.spans[3].duration_ms >= 12
    assert report.duration_ms >= report.spans[0].duration_ms
    assert [line.message for line in report.spans[0].logs] == ["upload.received"]
    assert [line.message for line in report.spans[4].logs] == ["llm.failed boom 100%"]
    assert (report.input_tokens, report.output_tokens) == (1300, 200)
    assert report.cost_usd == pytest.approx(0.0165)
    assert report.errors == 2  # the generate span and its error log line
    assert report.slowest_stage == "embed"
    assert report.user_ids == ["bob"]
    assert json.loads(json.dumps(report.to_dict()))["trace_id"] == seeded.trace_id


def test_debug_trace_rejects_bad_ids_and_reports_missing_traces(seeded: Seeded) -> None:
    for bad in ("xyz", "0" * 32, "a" * 31, "g" * 32, "'; drop table otel_rag.logs; --"):
        with pytest.raises(queries.InvalidInput, match="32 hexadecimal"):
            queries.debug_trace(seeded.reader, bad)
    with pytest.raises(queries.TraceNotFound):
        queries.debug_trace(seeded.reader, "f" * 32)


def test_find_errors_of_one_user_in_a_time_range(seeded: Seeded) -> None:
    errors = queries.find_errors(seeded.reader, "bob", since="-10m")
    assert {(e.source, e.name) for e in errors} == {("span", "rag.generate"), ("log", "rag")}
    log_error = next(e for e in errors if e.source == "log")
    assert (log_error.error_type, log_error.message) == ("TimeoutError", "llm.failed boom 100%")
    span_error = next(e for e in errors if e.source == "span")
    assert span_error.trace_id == seeded.trace_id
    assert span_error.error_type == "TimeoutError" and span_error.message == "upstream timeout"
    assert queries.find_errors(seeded.reader, "bob", since="-10m", until="-5m") == []
    assert [e.name for e in queries.find_errors(seeded.reader, "carol", since="-10m")] == ["GET /health"]
    with pytest.raises(queries.InvalidInput, match="empty"):
        queries.find_errors(seeded.reader, "bob", since="now", until="-1h")


def test_errors_of_everybody_and_recent_traces(seeded: Seeded) -> None:
    everybody = queries.find_errors(seeded.reader, None, since="-10m")
    assert {(e.user_id, e.name) for e in everybody if e.source == "span"} == {
        ("bob", "rag.generate"),
        ("carol", "GET /health"),
    }
    traces = queries.recent_traces(seeded.reader, since="-10m")
    assert [t.name for t in traces] == ["GET /health", "POST /documents"]  # newest first
    upload = traces[1]
    assert (upload.trace_id, upload.user_id, upload.errors) == (seeded.trace_id, "bob", 1)
    assert upload.duration_ms >= 17
    slow = queries.recent_traces(seeded.reader, since="-10m", min_duration_ms=upload.duration_ms - 0.01)
    assert [t.trace_id for t in slow] == [seeded.trace_id]
    failed = queries.recent_traces(seeded.reader, since="-10m", errors_only=True)
    assert len(failed) == 2 and all(t.errors >= 1 for t in failed)
    assert queries.recent_traces(seeded.reader, since="-10m", until="-5m") == []
    with pytest.raises(queries.InvalidInput, match="negative"):
        queries.recent_traces(seeded.reader, min_duration_ms=-1)


def test_trace_cost_by_stage(seeded: Seeded) -> None:
    lines = {line.stage: line for line in queries.trace_cost(seeded.reader, seeded.trace_id)}
    assert lines["generate"].cost_usd == pytest.approx(0.0105)
    assert lines["generate"].models == ["gpt-4o-mini"]
    assert (lines["generate"].input_tokens, lines["generate"].output_tokens) == (1000, 200)
    assert lines["embed"].cost_usd == pytest.approx(0.006)
    assert lines["parse"].cost_usd is None  # no cost recorded is not zero cost
    assert sum(line.cost_usd or 0 for line in lines.values()) == pytest.approx(0.0165)


def test_search_logs_filters(seeded: Seeded) -> None:
    every = queries.search_logs(seeded.reader, since="-10m")
    assert [line.message for line in every][:2] == ["upload.received", "parse.done"]
    errors = queries.search_logs(seeded.reader, since="-10m", level="error")
    assert [line.message for line in errors] == ["llm.failed boom 100%"]
    assert [x.message for x in queries.search_logs(seeded.reader, since="-10m", grep="BOOM 100%")] == [
        "llm.failed boom 100%"
    ]
    assert queries.search_logs(seeded.reader, since="-10m", grep="100%%") == []  # % is literal, not a wildcard
    assert queries.search_logs(seeded.reader, since="-10m", service="other") == []
    with pytest.raises(queries.InvalidInput, match="level"):
        queries.search_logs(seeded.reader, level="loud")


def test_parse_time_forms() -> None:
    now = dt.datetime(2026, 11, 29, 16, 0, tzinfo=dt.UTC)
    assert queries.parse_time("-15m", now) == now - dt.timedelta(minutes=15)
    assert queries.parse_time("-2h", now) == now - dt.timedelta(hours=2)
    assert queries.parse_time("-1d", now) == now - dt.timedelta(days=1)
    assert queries.parse_time("15:00", now) == dt.datetime(2026, 11, 29, 15, 0, tzinfo=dt.UTC)
    assert queries.parse_time("15:30:10", now).second == 10
    assert queries.parse_time("2026-11-28T10:00:00Z", now) == dt.datetime(2026, 11, 28, 10, tzinfo=dt.UTC)
    assert queries.parse_time("now", now) == now
    for bad in ("yesterday", "25:00", "-5x", ""):
        with pytest.raises(queries.InvalidInput):
            queries.parse_time(bad, now)


def _cli(store: Database, *args: str) -> subprocess.CompletedProcess[str]:
    env = base_env(OTEL_RAG_POSTGRES_DSN=store.dsn("rag_reader"))
    return subprocess.run([str(BIN / "otel-rag"), *args], env=env, capture_output=True, text=True, timeout=60)


def test_cli_trace_errors_cost_logs(seeded: Seeded) -> None:
    result = _cli(seeded.store, "trace", seeded.trace_id)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"trace {seeded.trace_id}" in out and "█" in out
    for name in ("POST /documents", "rag.parse", "rag.embed", "rag.generate", "upload.received"):
        assert name in out
    assert "✗" in out and "upstream timeout" in out
    assert "1300 in / 200 out" in out and "$0.016500" in out
    as_json = json.loads(_cli(seeded.store, "trace", seeded.trace_id, "--json").stdout)
    assert len(as_json["spans"]) == 5
    errors = json.loads(_cli(seeded.store, "errors", "--user", "bob", "--since", "-10m", "--json").stdout)
    assert len(errors) == 2
    cost = _cli(seeded.store, "cost", seeded.trace_id)
    assert "generate" in cost.stdout and "$0.016500" in cost.stdout
    logs = _cli(seeded.store, "logs", "--since", "-10m", "--level", "error", "--grep", "boom")
    assert "llm.failed boom 100%" in logs.stdout and "parse.done" not in logs.stdout


def test_cli_traces_lists_the_slow_and_the_failed(seeded: Seeded) -> None:
    every = _cli(seeded.store, "traces", "--since", "-10m")
    assert every.returncode == 0, every.stderr
    rows = every.stdout.splitlines()
    assert rows[0].split()[:3] == ["time", "trace", "id"] and len(rows) == 3
    assert (
        seeded.trace_id in rows[2] and "error" in rows[2] and "bob" in rows[2] and "rag-api: POST /documents" in rows[2]
    )
    upload_ms = json.loads(_cli(seeded.store, "traces", "--since", "-10m", "--json").stdout)[1]["duration_ms"]
    slow = json.loads(
        _cli(seeded.store, "traces", "--since", "-10m", "--slower-than", f"{upload_ms - 0.01:.3f}ms", "--json").stdout
    )
    assert [t["trace_id"] for t in slow] == [seeded.trace_id]
    failed = json.loads(_cli(seeded.store, "traces", "--since", "-10m", "--errors", "--json").stdout)
    assert {t["name"] for t in failed} == {"POST /documents", "GET /health"}
    assert "no requests in that range" in _cli(seeded.store, "traces", "--since", "-10m", "--until", "-5m").stdout
    bad = _cli(seeded.store, "traces", "--slower-than", "soon")
    assert bad.returncode == 2 and "--slower-than 'soon' is not valid" in bad.stderr


def test_cli_bad_input_exits_2_and_missing_exits_1(seeded: Seeded) -> None:
    bad = _cli(seeded.store, "trace", "not-a-trace")
    assert bad.returncode == 2 and "32 hexadecimal characters" in bad.stderr
    bad_time = _cli(seeded.store, "logs", "--since", "last tuesday")
    assert bad_time.returncode == 2 and "cannot read time" in bad_time.stderr
    missing = _cli(seeded.store, "trace", "e" * 32)
    assert missing.returncode == 1 and "not in the store" in missing.stderr
    no_dsn = subprocess.run(
        [str(BIN / "otel-rag"), "trace", "e" * 32], env=base_env(), capture_output=True, text=True, timeout=60
    )
    assert no_dsn.returncode == 2 and "OTEL_RAG_POSTGRES_DSN" in no_dsn.stderr


def test_queries_use_the_indexes(store: Database) -> None:
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(store.admin_dsn, autocommit=True) as connection:
        connection.execute("SELECT otel_rag.ensure_partitions(current_date - 2, current_date + 1)")
        # 60k rows spread over the 48 hours around now, 2000 traces, 200 users: enough for the planner to prefer
        # indexes, and today's partition always holds a whole day of rows (at 00:05 UTC as at 23:55).
        connection.execute(
            "INSERT INTO otel_rag.logs (time, record_id, trace_id, span_id, service_name, user_id, severity, "
            "severity_number, body) SELECT now() + interval '1 day' - (i * 172800.0 / 60000) * interval '1 second', "
            "gen_random_uuid(), "
            "md5((i % 2000)::text), substr(md5(i::text), 1, 16), 'svc', 'user' || (i % 200), "
            "CASE WHEN i % 50 = 0 THEN 'error' ELSE 'info' END, CASE WHEN i % 50 = 0 THEN 17 ELSE 9 END, "
            "'line ' || i FROM generate_series(1, 60000) i"
        )
        connection.execute(  # a tenth of the spans are roots, the rest have a parent, as in real traces
            "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, parent_span_id, service_name,"
            " user_id, name, kind, status) SELECT now() + interval '1 day' - (i * 172800.0 / 60000) * interval '1 s',"
            " now(), 1.0, md5((i % 2000)::text), substr(md5(i::text), 1, 16),"
            " CASE WHEN i % 10 = 0 THEN NULL ELSE substr(md5((i - i % 10)::text), 1, 16) END, 'svc',"
            " 'user' || (i % 200), 'op', 'INTERNAL', CASE WHEN i % 40 = 0 THEN 'ERROR' ELSE 'UNSET' END"
            " FROM generate_series(1, 60000) i"
        )
        connection.execute("ANALYZE otel_rag.logs")
        connection.execute("ANALYZE otel_rag.spans")
    trace_id = store.scalar("SELECT md5('7')")
    spans_plan = plan(store, queries.trace_spans_sql("otel_rag"), (trace_id,))
    assert "spans_key" in spans_plan or "_pkey" in spans_plan, spans_plan
    assert not real_seq_scans(spans_plan), spans_plan
    logs_plan = plan(store, queries.trace_logs_sql("otel_rag"), (trace_id,))
    assert "Index" in logs_plan and not real_seq_scans(logs_plan), logs_plan
    errors_plan = plan(
        store,
        queries.user_errors_sql("otel_rag"),
        {"user": "user7", "start": now - dt.timedelta(hours=1), "end": now, "limit": 100},
    )
    # Either the (user_id, time) index or the errors-by-time partial index: both answer without scanning.
    assert "Index Scan" in errors_plan and not real_seq_scans(errors_plan), errors_plan
    everybody = {"start": now - dt.timedelta(hours=1), "end": now, "limit": 100}
    all_errors_plan = plan(store, queries.user_errors_sql("otel_rag", any_user=True), everybody)
    assert not real_seq_scans(all_errors_plan), all_errors_plan
    slow_failed = queries.recent_traces_sql("otel_rag", min_duration=True, errors_only=True)
    traces_plan = plan(store, slow_failed, {**everybody, "min_duration_ms": 500.0})
    assert not real_seq_scans(traces_plan), traces_plan
    recent = plan(
        store,
        queries.logs_sql("otel_rag", [sql.SQL("time >= %(start)s"), sql.SQL("time < %(end)s")]),
        {"start": now - dt.timedelta(minutes=15), "end": now, "limit": 1000},
    )
    assert not real_seq_scans(recent), recent
    assert "_20" in recent  # partition pruning: only today's partition is read


def test_a_trace_that_arrived_with_a_traceparent_is_listed_once_by_its_root(store: Database) -> None:
    """Roots are the spans whose parent is not stored in the trace: a request with a remote parent is one; a
    second service's span whose (remote) parent is stored is not."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, set_span_in_context

    from otel_rag._store.exporters import PostgresSpanExporter, PostgresSpanProcessor
    from otel_rag._store.writer import PostgresWriter, WriterOptions
    from tests.support.postgres import scratch_dir

    writer = PostgresWriter(WriterOptions(dsn=store.dsn("rag_writer"), spool_dir=scratch_dir("spool-")))
    tracers = {}
    for service in ("gateway", "rag-api"):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(PostgresSpanProcessor(PostgresSpanExporter(writer)))
        tracers[service] = provider.get_tracer(service)

    def remote(trace_id: int, span_id: int) -> Any:
        context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))
        return set_span_in_context(NonRecordingSpan(context))

    # 1. A browser's traceparent: the parent is remote and not stored; the server span is the root.
    api = tracers["rag-api"]
    with (
        api.start_as_current_span("POST /query", context=remote(0xA1, 0xB1), kind=SpanKind.SERVER),
        api.start_span("rag.generate"),
    ):
        pass
    # 2. The gateway calls the RAG API: both store their spans; the gateway's span is the root, listed once.
    gateway_tracer = tracers["gateway"]
    with (
        gateway_tracer.start_as_current_span("GET /ask", kind=SpanKind.SERVER) as gateway,
        gateway_tracer.start_as_current_span("POST", kind=SpanKind.CLIENT) as call,
    ):
        context = call.get_span_context()
        with api.start_as_current_span("POST /query", context=remote(context.trace_id, context.span_id)):
            pass
    assert writer.force_flush(10)
    writer.shutdown()
    traces = queries.recent_traces(store.dsn("rag_reader"), since="-10m")
    by_trace = {summary.trace_id: summary for summary in traces}
    assert len(traces) == len(by_trace) == 2  # each trace once
    assert by_trace[format(0xA1, "032x")].name == "POST /query"
    gateway_trace = format(gateway.get_span_context().trace_id, "032x")
    assert by_trace[gateway_trace].name == "GET /ask" and by_trace[gateway_trace].service == "gateway"


def test_log_lines_say_what_failed_on_one_line() -> None:
    at = dt.datetime(2026, 12, 3, 15, 46, 30, tzinfo=dt.UTC)

    def line(message: str, **attributes: Any) -> queries.LogLine:
        return queries.LogLine(at, "error", "x", message, "a" * 32, None, "rag-app", None, attributes)

    text = render.render_logs(
        [
            line("generate.done", **{"error.type": "InternalServerError", "exception.message": "503 overloaded\nmore"}),
            line("Exception in ASGI application\n", **{"exception.type": "RuntimeError", "exception.stacktrace": "T"}),
            line("plain"),
        ]
    ).splitlines()
    assert text[0].endswith("generate.done  [InternalServerError: 503 overloaded]")
    assert text[1].endswith("Exception in ASGI application  [RuntimeError]")
    assert text[2].endswith(" plain") and len(text) == 3
