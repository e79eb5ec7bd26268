"""The Postgres writer's machinery against a real PostgreSQL, one behaviour at a time: sharing, forking, retrying
and backing off, memory relief, flush and shutdown deadlines, its own metrics (written against the mutants that
survived the sink tests, see docs/testing.md)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan

from otel_rag.redaction import Redactor
from otel_rag.store import writer as writer_module
from otel_rag.store.spool import read_segment
from otel_rag.store.writer import PostgresWriter, WriterOptions, shared_writer
from tests.conftest import Sdk
from tests.support.postgres import Database, scratch_dir

RESOURCE = Resource.create({"service.name": "writer-test"})


def _options(store: Database, **overrides: Any) -> WriterOptions:
    settings: dict[str, Any] = {"dsn": store.dsn("rag_writer"), "spool_dir": scratch_dir("spool-")}
    settings.update(overrides)
    return WriterOptions(**settings)


def _dead(store: Database) -> str:
    return store.dsn("rag_writer").replace(f":{store.server.port}/", ":9/")


def _log(body: str, nanoseconds: int | None = None) -> ReadableLogRecord:
    record = LogRecord(timestamp=nanoseconds or time.time_ns(), body=body, severity_number=SeverityNumber.INFO)
    return ReadableLogRecord(record, resource=RESOURCE)


def _count(store: Database) -> int:
    return int(store.scalar("SELECT count(*) FROM otel_rag.logs"))  # type: ignore[arg-type]


def _spooled(writer: PostgresWriter) -> int:
    return sum(len(read_segment(path).items) for path in Path(writer.options.spool_dir).rglob("*.seg"))


def test_one_writer_per_database_and_schema(store: Database) -> None:
    options = _options(store)
    redactor = Redactor()
    first = shared_writer(options, None)
    try:
        assert first.redactor is None
        assert shared_writer(options, redactor) is first and first.redactor is redactor  # filled in, once
        assert shared_writer(options, Redactor()).redactor is redactor
        other = shared_writer(_options(store, schema="other"), None)
        assert other is not first
        other.shutdown()
        first.shutdown()
        replacement = shared_writer(options, None)
        assert replacement is not first  # a writer that was shut down is replaced
        replacement.shutdown()
    finally:
        writer_module._shared.clear()


def test_a_forked_worker_writes_with_its_own_thread_and_connection(store: Database) -> None:
    writer = PostgresWriter(_options(store))
    writer.submit("log", [_log("parent before fork")])
    assert writer.force_flush(10)
    parent_thread, parent_connection = writer._thread, writer._connection
    pid = os.fork()
    if pid == 0:  # the child: the at-fork hook gave it a fresh queue, thread and connection
        code = 1
        try:
            fresh = writer._thread is not parent_thread and writer._connection is None and not writer._queue
            writer.submit("log", [_log("from the child")])
            code = 0 if fresh and writer.force_flush(10) else 3
            writer.shutdown()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert writer._thread is parent_thread and writer._connection is parent_connection
    writer.submit("log", [_log("parent after fork")])
    assert writer.force_flush(10)  # the child never closed the parent's connection
    bodies = store.scalar("SELECT json_agg(body ORDER BY body) FROM otel_rag.logs")
    assert bodies == ["from the child", "parent after fork", "parent before fork"]
    writer.shutdown()


def test_a_copy_stuck_past_the_shutdown_deadline_is_cancelled_and_its_batch_spooled(store: Database) -> None:
    writer = PostgresWriter(_options(store, shutdown_timeout=1.0, flush_interval=0.01))
    writer.submit("log", [_log("make the partition")])
    assert writer.force_flush(10)
    with psycopg.connect(store.admin_dsn) as blocker:
        blocker.execute("LOCK TABLE otel_rag.logs IN ACCESS EXCLUSIVE MODE")  # held until this block ends
        writer.submit("log", [_log(f"stuck {index}") for index in range(5)])
        time.sleep(0.5)  # the writer is now waiting inside its COPY
        started = time.monotonic()
        writer.shutdown()
        took = time.monotonic() - started
        blocker.rollback()
    assert took < 8, took  # the deadline, then the cancel: not an endless wait
    assert not writer._thread.is_alive()
    assert _spooled(writer) == 5 and writer.stats["dropped"] == 0


def test_flush_gives_up_at_its_deadline(store: Database) -> None:
    writer = PostgresWriter(_options(store, flush_interval=0.01))
    writer.submit("log", [_log("partition")])
    assert writer.force_flush(10)
    with psycopg.connect(store.admin_dsn) as blocker:
        blocker.execute("LOCK TABLE otel_rag.logs IN ACCESS EXCLUSIVE MODE")
        writer.submit("log", [_log("waits")])
        started = time.monotonic()
        assert writer.force_flush(0.5) is False
        assert 0.4 < time.monotonic() - started < 3
        blocker.rollback()
    assert writer.force_flush(10)
    writer.shutdown()
    assert writer.force_flush(0.1) is False  # the thread is gone


def test_its_own_metrics_count_what_it_stored(store: Database, sdk: Sdk) -> None:
    def total(name: str, **attributes: str) -> float:
        return sum(
            point.value if hasattr(point, "value") else point.count
            for point in sdk.metric_points(name)
            if all(point.attributes.get(key) == value for key, value in attributes.items())
        )

    before_logs, before_traces = (
        total("otel_rag.sink.exported", signal="logs"),
        total("otel_rag.sink.exported", signal="traces"),
    )
    before_batches = total("otel_rag.sink.batch.duration")
    writer = PostgresWriter(_options(store))
    span = ReadableSpan(
        name="stored",
        context=__import__("opentelemetry.trace", fromlist=["SpanContext"]).SpanContext(1, 1, False),
        resource=RESOURCE,
        start_time=time.time_ns(),
        end_time=time.time_ns(),
    )
    broken = ReadableSpan(name="broken", context=None, resource=RESOURCE)
    writer.submit("log", [_log("one"), _log("two"), _log("three")])
    writer.submit("span", [span, broken])
    assert writer.force_flush(10)
    assert total("otel_rag.sink.exported", signal="logs") - before_logs == 3
    assert total("otel_rag.sink.exported", signal="traces") - before_traces == 1  # not the unconvertible one
    assert total("otel_rag.sink.batch.duration") - before_batches >= 1
    assert writer.stats["exported"] == 4 and writer.stats["queued"] == 5
    writer.shutdown()


def test_retries_back_off_from_a_quarter_second_doubling_to_ten(store: Database) -> None:
    writer = PostgresWriter(_options(store, dsn=_dead(store), connect_timeout=1))
    seen = []  # the writer's thread idles (nothing queued): these calls drive the retry logic directly
    for _ in range(10):
        assert writer._write_items([("log", _log("x"))]) is False
        seen.append(writer._backoff)
    assert 0.2 <= seen[0] <= 0.3  # a quarter second, give or take the jitter
    for earlier, later in itertools.pairwise(seen):
        assert 1.6 * earlier <= later <= 2.4 * earlier or 8 <= later <= 12, seen  # doubled, or capped at ten
    assert 8 <= seen[-1] <= 12 and max(seen) <= 12
    assert writer.stats["retried"] == 10
    writer._backoff = 0.0
    writer.shutdown()


def test_memory_is_relieved_during_the_backoff_not_after_it(store: Database) -> None:
    writer = PostgresWriter(_options(store, dsn=_dead(store), queue_size=200, batch_size=20, connect_timeout=1))
    writer.submit("log", [_log("first")])
    deadline = time.monotonic() + 10
    while writer.stats["retried"] < 3 and time.monotonic() < deadline:  # the backoff has grown past a second
        time.sleep(0.05)
    writer.submit("log", [_log(f"burst {index}") for index in range(150)])
    time.sleep(0.3)  # well inside the backoff
    assert len(writer._queue) <= 100 and writer.stats["spooled"] >= 50
    writer.shutdown()


def test_relieving_memory_leaves_exactly_the_high_water_mark(store: Database) -> None:
    writer = PostgresWriter(_options(store, dsn=_dead(store), queue_size=100, batch_size=7, connect_timeout=1))
    writer._queue.extend(("log", _log(f"r{index}")) for index in range(93))
    writer._relieve_memory()
    assert len(writer._queue) == 50 and writer.stats["spooled"] == 43
    writer._relieve_memory()
    assert len(writer._queue) == 50
    writer.shutdown()


def test_a_record_that_cannot_be_converted_is_described_without_its_secrets(store: Database) -> None:
    writer = PostgresWriter(_options(store), Redactor())
    writer.submit("span", [ReadableSpan(name="broken token=abc123", context=None, resource=RESOURCE)])
    assert writer.force_flush(10)
    (line,) = (writer.spool().dir / "poison.jsonl").read_text().splitlines()
    poison = json.loads(line)
    assert poison["reason"].startswith("cannot convert to a row: AssertionError")
    assert "broken token=[REDACTED]" in poison["row"]["unconvertible"] and "abc123" not in line
    writer.shutdown()


def test_partitions_are_made_for_every_day_in_between(store: Database) -> None:
    writer = PostgresWriter(_options(store))
    day = 86400 * 10**9
    now = time.time_ns()
    writer.submit("log", [_log("today", now), _log("three days ago", now - 3 * day)])
    assert writer.force_flush(10)
    today = dt.datetime.now(dt.UTC).date()
    assert {today - dt.timedelta(days=n) for n in range(4)} <= writer._partitions
    names = store.scalar("SELECT json_agg(tablename) FROM pg_tables WHERE schemaname = 'otel_rag'")
    assert f"logs_{today - dt.timedelta(days=2):%Y%m%d}" in names  # the day in between too
    writer.shutdown()


def test_two_poison_rows_among_good_ones_are_set_aside_alone(store: Database) -> None:
    writer = PostgresWriter(_options(store))
    writer.submit("log", [_log("partition")])
    assert writer.force_flush(10)
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())

    def row(body: str, record_id: str) -> tuple[Any, ...]:
        return (now, record_id, None, None, "svc", None, "info", 9, None, body, "{}", "{}", None, None, None)

    import uuid

    items = [("log", row(f"good {index}", str(uuid.uuid4()))) for index in range(8)]
    items[2] = ("log", row("bad 1", "not-a-uuid"))
    items[6] = ("log", row("bad 2", "also-not"))
    assert writer._write_items(items)
    assert _count(store) == 7 and writer.stats["dropped"] == 2
    writer.shutdown()


def test_how_long_the_thread_may_sleep(store: Database) -> None:
    writer = PostgresWriter(_options(store, flush_interval=0.05))
    writer._next_orphan_check = time.monotonic() + 60
    assert writer._wait_time() is None
    writer._queue.append(("log", _log("x")))
    assert writer._wait_time() == 0.05
    writer._queue.clear()
    writer._backoff = 2.0
    assert writer._wait_time() == 2.0
    writer._backoff = 0.01
    assert writer._wait_time() == 0.05
    writer._backoff = 0.0
    writer._next_orphan_check = 0.0
    assert writer._wait_time() == 0.05
    writer._next_orphan_check = time.monotonic() + 60
    writer.shutdown()


def test_shutdown_from_many_threads_at_once_writes_everything_once(store: Database) -> None:
    writer = PostgresWriter(_options(store))
    writer.submit("log", [_log(f"r{index}") for index in range(100)])
    threads = [threading.Thread(target=writer.shutdown) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert _count(store) == 100
    writer.submit("log", [_log("too late")])
    assert writer.stats["dropped"] == 1
    with pytest.raises(AssertionError):
        assert writer._thread.is_alive()
