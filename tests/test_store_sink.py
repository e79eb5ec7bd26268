"""The Postgres sink: rows with trace context, safety of odd content, idempotency, poison isolation."""

from __future__ import annotations

import time
from typing import Any

import structlog
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_rag._config.settings import load_settings
from otel_rag._store.exporters import (
    PostgresLogExporter,
    PostgresLogProcessor,
    PostgresSpanExporter,
    PostgresSpanProcessor,
)
from otel_rag._store.rows import Limits
from otel_rag._store.writer import PostgresWriter, WriterOptions
from otel_rag._telemetry.logs import get_logger, setup_logging
from otel_rag._telemetry.tracing import set_user
from tests.support.postgres import Database, scratch_dir

RESOURCE = Resource.create({"service.name": "sink-test"})


def _writer(store: Database, **options: Any) -> PostgresWriter:
    defaults: dict[str, Any] = {
        "dsn": store.dsn("rag_writer"),
        "spool_dir": scratch_dir("spool-"),
        "flush_interval": 0.05,
    }
    defaults.update(options)
    return PostgresWriter(WriterOptions(**defaults))


def _providers(writer: PostgresWriter) -> tuple[TracerProvider, LoggerProvider]:
    tracer_provider = TracerProvider(resource=RESOURCE)
    tracer_provider.add_span_processor(PostgresSpanProcessor(PostgresSpanExporter(writer)))
    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(PostgresLogProcessor(PostgresLogExporter(writer)))
    return tracer_provider, logger_provider


def emit_sample_trace(writer: PostgresWriter) -> str:
    """upload > parse, embed; with a user, tokens and cost; returns the trace id."""
    tracer_provider, _ = _providers(writer)
    tracer = tracer_provider.get_tracer("sample")
    with tracer.start_as_current_span("upload", attributes={"enduser.id": "u-1", "rag.stage": "upload"}) as root:
        with tracer.start_as_current_span("parse", attributes={"rag.stage": "parse"}):
            pass
        with tracer.start_as_current_span(
            "embed",
            attributes={
                "rag.stage": "embed",
                "gen_ai.usage.input_tokens": 120,
                "rag.cost_usd": 0.0024,
                "gen_ai.request.model": "text-embedding-3-small",
            },
        ):
            time.sleep(0.002)
    return format(root.get_span_context().trace_id, "032x")


def test_logs_and_spans_land_with_trace_context(store: Database, capsys: Any) -> None:
    writer = _writer(store)
    tracer_provider, logger_provider = _providers(writer)
    setup_logging(load_settings({"OTEL_SERVICE_NAME": "sink-test"}), provider=logger_provider)
    try:
        tracer = tracer_provider.get_tracer("t")
        with tracer.start_as_current_span("request") as span:
            set_user("alice")
            get_logger("app").info("chunk.created", chunk_index=3, input_tokens=7, cost_usd=0.5)
            with tracer.start_as_current_span("inner") as inner:
                inner.set_status(Status(StatusCode.ERROR, "broken"))
                get_logger("app").error("stage.failed", password="hunter2")
        assert writer.force_flush(10)
    finally:
        structlog.reset_defaults()
    trace_id = format(span.get_span_context().trace_id, "032x")
    rows = store.scalar(
        "SELECT json_agg(json_build_object('body', body, 'span', span_id, 'user', user_id, 'sev', severity, "
        "'pw', attributes->>'password', 'tokens', input_tokens, 'cost', cost_usd) ORDER BY time) "
        "FROM otel_rag.logs WHERE trace_id = %s",
        trace_id,
    )
    assert [row["body"] for row in rows] == ["chunk.created", "stage.failed"]
    assert rows[0]["span"] == format(span.get_span_context().span_id, "016x")
    assert rows[1]["span"] == format(inner.get_span_context().span_id, "016x")
    assert {row["user"] for row in rows} == {"alice"}
    assert rows[0]["tokens"] == 7 and float(rows[0]["cost"]) == 0.5
    assert rows[1]["sev"] == "error" and rows[1]["pw"] == "[REDACTED]"
    spans = store.scalar(
        "SELECT json_agg(json_build_object('name', name, 'status', status, 'parent', parent_span_id)) "
        "FROM otel_rag.spans WHERE trace_id = %s",
        trace_id,
    )
    by_name = {s["name"]: s for s in spans}
    assert by_name["inner"]["status"] == "ERROR"
    assert by_name["inner"]["parent"] == format(span.get_span_context().span_id, "016x")
    writer.shutdown()


def test_odd_content_is_stored_safely(store: Database) -> None:
    writer = _writer(store, limits=Limits(max_body=1000, max_value=100, max_attributes=5000))
    _, logger_provider = _providers(writer)
    logger = logger_provider.get_logger("odd")
    logger.emit(body="nul\x00inside", attributes={"bad": "surrogate \udcff here", "nul": "a\x00b"})
    logger.emit(body="x" * 5000, attributes={"long": "y" * 500})
    logger.emit(body="many", attributes={f"k{i}": "v" * 90 for i in range(200)})
    logger.emit(body={"structured": ["body", 1]}, attributes={"nan": float("nan"), "big": 2**70})
    assert writer.force_flush(10)
    rows = store.scalar(
        "SELECT json_agg(json_build_object('body', body, 'attrs', attributes) ORDER BY time) FROM otel_rag.logs"
    )
    assert len(rows) == 4
    assert rows[0]["body"] == "nul\ufffdinside"
    assert rows[0]["attrs"]["nul"] == "a\ufffdb" and rows[0]["attrs"]["bad"] == "surrogate ? here"
    assert rows[1]["body"].startswith("x" * 1000) and rows[1]["body"].endswith("[truncated 4000 chars]")
    assert rows[1]["attrs"]["long"].endswith("[truncated 400 chars]")
    assert rows[2]["attrs"]["otel_rag.truncated"] is True
    assert rows[3]["body"] == '{"structured":["body",1]}'
    assert rows[3]["attrs"] == {"nan": None, "big": str(2**70)}
    assert writer.stats["dropped"] == 0
    writer.shutdown()


def test_a_retried_batch_never_duplicates_rows(store: Database) -> None:
    writer = _writer(store)
    trace_id = emit_sample_trace(writer)
    assert writer.force_flush(10)
    # The same rows again, as after a commit whose outcome was unknown.
    columns = (
        "time, end_time, duration_ms, trace_id, span_id, parent_span_id, service_name, user_id, name, kind, "
        "status, status_message, scope, attributes::text, events::text, resource::text, cost_usd::float8, "
        "input_tokens, output_tokens"
    )
    items = [("span", row) for row in store_rows(store, f"SELECT {columns} FROM otel_rag.spans")]
    assert writer._write_items(items)
    assert writer.stats["deduplicated_batches"] == 1
    assert store.scalar("SELECT count(*) FROM otel_rag.spans WHERE trace_id = %s", trace_id) == 3
    writer.shutdown()


def store_rows(store: Database, query: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(store.admin_dsn) as connection:
        return [
            tuple(v.isoformat() if hasattr(v, "isoformat") else v for v in row)
            for row in connection.execute(query.encode()).fetchall()
        ]


def test_a_poison_record_is_isolated_and_the_rest_written(store: Database, caplog: Any) -> None:
    writer = _writer(store)
    emit_sample_trace(writer)
    assert writer.force_flush(10)
    good = store_rows(
        store,
        "SELECT time, gen_random_uuid()::text, trace_id, span_id, service_name, user_id, 'info', 9, 'x', 'good', "
        "'{}', '{}', NULL, NULL, NULL FROM otel_rag.spans",
    )
    poison = (
        time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "not-a-uuid",
        None,
        None,
        "svc",
        None,
        "info",
        9,
        None,
        "bad",
        "{}",
        "{}",
        None,
        None,
        None,
    )
    items = [("log", good[0]), ("log", poison), ("log", good[1]), ("log", good[2])]
    assert writer._write_items(items)
    assert store.scalar("SELECT count(*) FROM otel_rag.logs WHERE body = 'good'") == 3
    assert writer.stats["dropped"] == 1
    quarantined = (writer.spool().dir / "poison.jsonl").read_text()
    assert "not-a-uuid" in quarantined and "InvalidTextRepresentation" in quarantined
    writer.submit("log", [])  # the writer thread says what happened (never the exporters' caller)
    assert writer.force_flush(10)
    warnings = " ".join(record.getMessage() for record in caplog.records if record.name == "otel_rag.store")
    assert str(writer.spool().dir / "poison.jsonl") in warnings  # where the file is, not the spool root
    refused = f"a record was refused by Postgres and quarantined in {writer.spool().dir / 'poison.jsonl'}: "
    assert refused + 'invalid input syntax for type uuid: "not-a-uuid"' in warnings  # and Postgres's reason
    writer.shutdown()


def test_emit_never_waits_for_the_database(store: Database) -> None:
    # A server that is not there: submitting must stay O(1) and fast; everything ends in the spool on flush.
    dead_dsn = store.dsn("rag_writer").replace(f":{store.server.port}/", ":9/")
    writer = _writer(store, dsn=dead_dsn, queue_size=100_000)
    _, logger_provider = _providers(writer)
    logger = logger_provider.get_logger("fast")
    started = time.perf_counter()
    for index in range(5000):
        logger.emit(body="e", attributes={"i": index})
    per_event_us = (time.perf_counter() - started) / 5000 * 1e6
    assert per_event_us < 500, per_event_us  # generous bound: a blocking connect would take seconds
    assert writer.force_flush(20)  # flush = durable: with Postgres away, that means spooled
    assert writer.stats["spooled"] == 5000
    writer.shutdown()


def test_launcher_with_postgres_beside_otlp(store: Database, otlp: Any) -> None:
    """`OTEL_TRACES_EXPORTER=otlp,postgres`: both receive; SIGTERM flushes the last request's rows."""
    import httpx

    from tests.support.processes import base_env, launch_uvicorn

    env = base_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
        OTEL_TRACES_EXPORTER="otlp,postgres",
        OTEL_LOGS_EXPORTER="postgres",
        OTEL_RAG_POSTGRES_DSN=store.dsn("rag_writer"),
        OTEL_RAG_SPOOL_DIR=str(scratch_dir("spool-")),
        OTEL_RAG_POSTGRES_FLUSH_INTERVAL="5000",  # nothing is written before shutdown unless shutdown flushes
    )
    with launch_uvicorn(env) as app:
        app.wait_ready()
        response = httpx.get(app.url + "/hello", headers={"X-User-Id": "pg-user"})
        trace_id = response.headers["x-trace-id"]
        otlp.wait_for(lambda r: any(s["trace_id"] == trace_id for s in r.spans))
        app.stop()  # SIGTERM
    names = store.scalar("SELECT array_agg(name ORDER BY name) FROM otel_rag.spans WHERE trace_id = %s", trace_id)
    assert names == ["GET /hello", "compose_greeting"]
    bodies = store.scalar("SELECT array_agg(body ORDER BY time) FROM otel_rag.logs WHERE trace_id = %s", trace_id)
    assert "greeting.composed" in bodies and "greeting world" in bodies
    assert store.scalar("SELECT count(DISTINCT user_id) FROM otel_rag.logs WHERE trace_id = %s", trace_id) == 1
    assert store.scalar("SELECT max(user_id) FROM otel_rag.spans WHERE trace_id = %s", trace_id) == "pg-user"


def test_the_sink_reports_its_own_health_as_metrics(store: Database, sdk: Any) -> None:
    writer = _writer(store)
    emit_sample_trace(writer)
    assert writer.force_flush(10)
    dead = _writer(store, dsn=store.dsn("rag_writer").replace(f":{store.server.port}/", ":9/"))
    emit_sample_trace(dead)
    assert dead.force_flush(20)

    assert sdk.metric_total("otel_rag.sink.exported", signal="traces") >= 3
    assert sdk.metric_total("otel_rag.sink.spooled") >= 3
    assert sdk.metric_total("otel_rag.sink.retried") >= 1
    assert sdk.metric_points("otel_rag.sink.batch.duration")
    assert [p.value for p in sdk.metric_points("otel_rag.sink.spool.size")][-1] > 0
    assert sdk.metric_points("otel_rag.sink.queued")
    writer.shutdown()
    dead.shutdown()
