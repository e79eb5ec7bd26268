"""The sink's promises under bad records and bad moments, against a real PostgreSQL: a bad record is set aside
alone and never wedges the rest, nothing is stored twice, the caller's thread never does I/O, shutdown is safe from
several threads, the spool is private, and a refused login is said out loud (without the password)."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from otel_rag._store.exporters import (
    PostgresLogExporter,
    PostgresLogProcessor,
    PostgresSpanExporter,
    PostgresSpanProcessor,
)
from otel_rag._store.spool import _HEADER, Spool, read_segment
from otel_rag._store.writer import PostgresWriter, WriterOptions
from tests.support.postgres import Database, scratch_dir
from tests.support.spooled import leave_as_killed, log_row

RESOURCE = Resource.create({"service.name": "contract"})


def _writer(store: Database, **options: Any) -> PostgresWriter:
    settings: dict[str, Any] = {"dsn": store.dsn("rag_writer"), "spool_dir": scratch_dir("spool-")}
    settings.update(options)
    return PostgresWriter(WriterOptions(**settings))


def _log(body: str, nanoseconds: int | None = None) -> ReadableLogRecord:
    return ReadableLogRecord(
        LogRecord(timestamp=nanoseconds or time.time_ns(), body=body, severity_number=SeverityNumber.INFO),
        resource=RESOURCE,
    )


def _bodies(store: Database) -> list[str]:
    rows = store.scalar("SELECT json_agg(body ORDER BY body) FROM otel_rag.logs")
    return list(rows or [])


def _poison(writer: PostgresWriter) -> list[dict[str, Any]]:
    files = list(Path(writer.options.spool_dir).rglob("poison*.jsonl"))
    return [json.loads(line) for path in files for line in path.read_text().splitlines()]


def test_a_record_far_from_now_is_set_aside_and_everything_else_lands(store: Database) -> None:
    writer = _writer(store)
    milliseconds = time.time_ns() // 1_000_000  # ms given where ns are expected: 1970
    ten_years = time.time_ns() + 10 * 365 * 86400 * 10**9
    writer.submit("log", [_log("before"), _log("ms as ns", milliseconds), _log("far future", ten_years)])
    writer.submit("log", [_log("after")])
    assert writer.force_flush(10)
    writer.submit("log", [_log("later batch")])
    assert writer.force_flush(10)
    assert _bodies(store) == ["after", "before", "later batch"]
    poison = _poison(writer)
    assert sorted(record["row"][9] for record in poison) == ["far future", "ms as ns"]
    assert all("outside the partition window" in record["reason"] for record in poison)
    assert writer.stats["dropped"] == 2 and writer.stats["retried"] == 0  # not mistaken for an outage
    partitions = store.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'otel_rag' AND tablename ~ '_19'")
    assert partitions == 0
    writer.shutdown()


def test_a_spool_holding_bad_rows_replays_everything_else_after_a_restart(store: Database) -> None:
    """What wedged the sink for good: a far timestamp spooled as an 'outage', then replayed first, forever."""
    spool_dir = scratch_dir("spool-")
    dead = Spool(spool_dir, 1 << 20, owner="dead-process")
    dead.append([("log", log_row("spooled 1")), ("log", log_row("from 1970", "1970-01-21T05:00:00.000000+00:00"))])
    dead.append([("log", log_row("bad uuid", record_id="not-a-uuid")), ("log", log_row("spooled 2"))])
    segment = dead.segments()[-1]
    with segment.open("ab") as file:  # a frame that passes its checksum but is not a row
        import zlib

        payload = b'{"not": "a row"}'
        file.write(_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
        good = json.dumps(["log", list(log_row("spooled 3"))]).encode()
        file.write(_HEADER.pack(len(good), zlib.crc32(good)) + good)
    leave_as_killed(dead)

    writer = _writer(store, spool_dir=spool_dir)
    writer.submit("log", [_log("new after restart")])
    assert writer.force_flush(10)
    assert _bodies(store) == ["new after restart", "spooled 1", "spooled 2", "spooled 3"]
    reasons = " ".join(record["reason"] for record in _poison(writer))
    assert "outside the partition window" in reasons and "InvalidTextRepresentation" in reasons
    assert not list(spool_dir.rglob("*.seg"))
    writer.shutdown()


def test_a_record_that_cannot_be_converted_is_set_aside_alone(store: Database) -> None:
    writer = _writer(store)
    broken = ReadableSpan(name="no context", context=None, resource=RESOURCE)  # span_row cannot make a row
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(PostgresSpanProcessor(PostgresSpanExporter(writer)))
    with provider.get_tracer("t").start_as_current_span("fine"):
        pass
    writer.submit("span", [broken])
    writer.submit("log", [_log("also fine")])
    assert writer.force_flush(10)
    assert store.scalar("SELECT count(*) FROM otel_rag.spans WHERE name = 'fine'") == 1
    assert _bodies(store) == ["also fine"]
    (poison,) = _poison(writer)
    assert poison["reason"].startswith("cannot convert to a row") and "no context" in poison["row"]["unconvertible"]
    writer.shutdown()


def _span_rows(store: Database) -> list[tuple[Any, ...]]:
    from tests.test_store_sink import store_rows

    columns = (
        "time, end_time, duration_ms, trace_id, span_id, parent_span_id, service_name, user_id, name, kind, "
        "status, status_message, scope, attributes::text, events::text, resource::text, cost_usd::float8, "
        "input_tokens, output_tokens"
    )
    return store_rows(store, f"SELECT {columns} FROM otel_rag.spans ORDER BY name")


def test_a_half_stored_batch_sent_again_adds_exactly_the_new_rows(store: Database) -> None:
    """After a commit whose outcome is unknown, a retry meets some of its rows already stored."""
    writer = _writer(store)
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(PostgresSpanProcessor(PostgresSpanExporter(writer)))
    tracer = provider.get_tracer("t")
    for index in range(6):
        with tracer.start_as_current_span(f"span-{index}"):
            pass
    assert writer.force_flush(10)
    rows = _span_rows(store)
    assert len(rows) == 6
    with __import__("psycopg").connect(store.admin_dsn, autocommit=True) as connection:
        connection.execute("DELETE FROM otel_rag.spans WHERE name IN ('span-1', 'span-3', 'span-4')")
    assert writer._write_items([("span", row) for row in rows])
    assert writer.stats["deduplicated_batches"] == 1
    assert [row[8] for row in _span_rows(store)] == [f"span-{index}" for index in range(6)]
    writer.shutdown()


def test_the_callers_thread_never_touches_the_disk_when_the_queue_overflows(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = store.dsn("rag_writer").replace(f":{store.server.port}/", ":9/")
    writer = _writer(store, dsn=dead, queue_size=200, batch_size=50, connect_timeout=1)
    fsyncs: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        fsyncs.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    exporter = PostgresLogExporter(writer)
    caller = threading.current_thread().name
    sent = 0
    for _ in range(40):  # 4000 records through a 200-record queue while Postgres is away
        exporter.export([_log("burst") for _ in range(100)])
        sent += 100
        time.sleep(0.01)
    assert writer.force_flush(30)
    assert fsyncs and caller not in fsyncs and set(fsyncs) == {"otel-rag-postgres-writer"}
    spooled, dropped = writer.stats["spooled"], writer.stats["dropped"]
    assert spooled + dropped == sent and spooled > 0  # every record accounted for: on disk, or counted
    writer.shutdown()


def test_parallel_shutdowns_of_log_and_span_providers_are_safe(store: Database) -> None:
    dead = store.dsn("rag_writer").replace(f":{store.server.port}/", ":9/")
    writer = _writer(store, dsn=dead, connect_timeout=1, shutdown_timeout=1.0)
    tracer_provider = TracerProvider(resource=RESOURCE)
    tracer_provider.add_span_processor(PostgresSpanProcessor(PostgresSpanExporter(writer)))
    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(PostgresLogProcessor(PostgresLogExporter(writer)))
    for index in range(300):
        with tracer_provider.get_tracer("t").start_as_current_span(f"s{index}"):
            logger_provider.get_logger("l").emit(body=f"l{index}")
    errors: list[BaseException] = []

    def shut(provider: Any) -> None:
        try:
            provider.shutdown()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=shut, args=(p,)) for p in (tracer_provider, logger_provider) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    writer.shutdown()  # once more, from here: a no-op
    assert errors == []
    assert writer.stats["spooled"] == 600 and writer.stats["dropped"] == 0
    on_disk = sum(len(read_segment(path).items) for path in Path(writer.options.spool_dir).rglob("*.seg"))
    assert on_disk == 600


def test_the_spool_is_private(store: Database) -> None:
    dead = store.dsn("rag_writer").replace(f":{store.server.port}/", ":9/")
    spool_dir = scratch_dir("spool-") / "nested" / "spool"
    writer = _writer(store, dsn=dead, spool_dir=spool_dir, connect_timeout=1)
    writer.submit("log", [_log("secret-ish")])
    writer.submit("span", [ReadableSpan(name="broken", context=None, resource=RESOURCE)])
    assert writer.force_flush(20)
    files = [path for path in spool_dir.rglob("*") if path.is_file()]
    folders = [spool_dir, *[path for path in spool_dir.rglob("*") if path.is_dir()]]
    assert {path.suffix for path in files} >= {".seg", ".jsonl"}
    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    writer.shutdown()


def test_a_refused_login_is_said_once_without_the_password(store: Database, caplog: pytest.LogCaptureFixture) -> None:
    wrong = store.server.dsn(user="rag_writer", password="wrong-password-XYZ", dbname=store.name)
    caplog.set_level(logging.DEBUG, logger="otel_rag.store")
    writer = _writer(store, dsn=wrong)
    for _ in range(3):
        writer.submit("log", [_log("waits in the spool")])
        writer.force_flush(10)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, [record.getMessage() for record in caplog.records]
    message = errors[0].getMessage()
    assert "password authentication failed" in message and "wrong-password-XYZ" not in message
    assert writer.stats["spooled"] == 3
    writer.shutdown()


def _voluntary_switches(thread: threading.Thread) -> int:
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("voluntary_ctxt_switches")).split()[1])


def test_an_idle_sink_sleeps(store: Database) -> None:
    """No records, no flush, no retry due: the writer thread waits for work instead of waking 20 times a second."""
    writer = _writer(store)
    writer.submit("log", [_log("one")])
    assert writer.force_flush(10)
    time.sleep(0.3)
    before = _voluntary_switches(writer._thread)
    time.sleep(2.0)
    assert _voluntary_switches(writer._thread) - before <= 2
    writer.submit("log", [_log("two")])  # and it wakes when records arrive
    assert writer.force_flush(10)
    assert _bodies(store) == ["one", "two"]
    writer.shutdown()


def test_a_span_row_spooled_before_a_column_was_added_is_replayed(store: Database) -> None:
    """Columns are only appended: a row from an older version's spool gets NULLs for the new ones."""
    spool_dir = scratch_dir("spool-")
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
    old_row: tuple[Any, ...] = (now, now, 1.0, "ab" * 16, "cd" * 8, None, "svc", None, "from an older spool")
    old_row += (
        "INTERNAL",
        "UNSET",
        None,
        "scope",
        "{}",
        "[]",
        "{}",
        None,
        None,
        None,
    )  # 19 values: no parent_remote yet
    dead = Spool(spool_dir, 1 << 20, owner="older-version")
    dead.append([("span", old_row)])
    leave_as_killed(dead)
    writer = _writer(store, spool_dir=spool_dir)
    assert writer.force_flush(10)
    stored = store.scalar("SELECT parent_remote IS NULL FROM otel_rag.spans WHERE name = 'from an older spool'")
    assert stored is True and writer.stats["dropped"] == 0
    writer.shutdown()
