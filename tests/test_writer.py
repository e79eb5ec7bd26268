"""The Postgres writer's machinery against a real PostgreSQL, one behaviour at a time: sharing, forking, retrying
and backing off, memory relief, flush and shutdown deadlines, its own metrics (written against the mutants that
survived the sink tests, see docs/testing.md)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import random
import socket
import subprocess
import sys
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

from otel_rag._store import writer as writer_module
from otel_rag._store.spool import Spool, read_segment
from otel_rag._store.writer import PostgresWriter, WriterOptions, shared_writer
from otel_rag._telemetry import metrics as telemetry_metrics
from otel_rag._telemetry.redaction import Redactor
from otel_rag.testing import CapturedTelemetry
from tests.support.postgres import Database, scratch_dir
from tests.support.spooled import leave_as_killed, log_row

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


def _idle(writer: PostgresWriter) -> PostgresWriter:
    """Let the writer's thread settle into its idle sleep, so that a test can drive the writer's steps itself."""
    with writer._condition:
        writer._next_orphan_check = time.monotonic() + 60
        writer._condition.notify()  # out of a timed wait (the first orphan check), into the idle one
    time.sleep(0.2)
    return writer


def _count(store: Database) -> int:
    return int(store.scalar("SELECT count(*) FROM otel_rag.logs"))


def _count_within(store: Database, expected: int, seconds: float) -> int:
    """The stored log count once it reaches `expected`, or when `seconds` have passed (then the assert shows it)."""
    deadline = time.monotonic() + seconds
    while _count(store) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return _count(store)


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
    assert parent_connection is not None
    parent_backend = parent_connection.info.backend_pid
    pid = os.fork()
    if pid == 0:  # the child: the at-fork hook gave it a fresh queue, thread, connection and shutdown lock
        code = 1
        try:
            fresh = writer._thread is not parent_thread and writer._connection is None and not writer._queue
            writer.submit("log", [_log("from the child")])
            flushed = writer.force_flush(10)
            writer.shutdown()  # its own shutdown, which must work in the child
            code = 0 if fresh and flushed else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert writer._thread is parent_thread and writer._connection is parent_connection
    writer.submit("log", [_log("parent after fork")])
    assert writer.force_flush(10)
    # The child never closed the parent's connection: the same server session, no retry.
    assert writer._connection is parent_connection and parent_connection.info.backend_pid == parent_backend
    assert writer.stats["retried"] == 0 and not parent_connection.closed
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


def test_its_own_metrics_count_what_it_stored(store: Database, sdk: CapturedTelemetry) -> None:
    before_logs, before_traces = (
        sdk.metric_total("otel_rag.sink.exported", signal="logs"),
        sdk.metric_total("otel_rag.sink.exported", signal="traces"),
    )
    before_batches = sdk.metric_total("otel_rag.sink.batch.duration")
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
    assert sdk.metric_total("otel_rag.sink.exported", signal="logs") - before_logs == 3
    assert sdk.metric_total("otel_rag.sink.exported", signal="traces") - before_traces == 1  # not the unconvertible one
    assert sdk.metric_total("otel_rag.sink.batch.duration") - before_batches >= 1
    assert writer.stats["exported"] == 4 and writer.stats["queued"] == 5
    writer.submit("log", [_log("four")])
    assert writer.force_flush(10)
    assert writer.stats["exported"] == 5  # a running total
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
    writer = _idle(PostgresWriter(_options(store, dsn=_dead(store), queue_size=100, batch_size=7, connect_timeout=1)))
    with writer._condition:  # the thread stays out of it
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
    assert writer._partitions == {today - dt.timedelta(days=n) for n in range(4)}
    names = store.scalar("SELECT json_agg(tablename) FROM pg_tables WHERE schemaname = 'otel_rag'")
    assert f"logs_{today - dt.timedelta(days=2):%Y%m%d}" in names  # the day in between too
    writer.shutdown()


def test_two_poison_rows_among_good_ones_are_set_aside_alone(store: Database) -> None:
    writer = PostgresWriter(_options(store))
    writer.submit("log", [_log("partition")])
    assert writer.force_flush(10)
    items = [("log", log_row(f"good {index}")) for index in range(8)]
    items[2] = ("log", log_row("bad 1", record_id="not-a-uuid"))
    items[6] = ("log", log_row("bad 2", record_id="also-not"))
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


# -- waiting out the backoff ---------------------------------------------------------------------------------------


def test_retries_wait_out_their_backoff_while_records_keep_arriving_and_resume_when_postgres_answers(
    store: Database,
) -> None:
    options = _options(store, dsn=_dead(store), batch_size=5, queue_size=10_000, connect_timeout=1)
    writer = PostgresWriter(options)
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # a full batch every 20 ms wakes the thread each time
        writer.submit("log", [_log(f"r{sent + index}") for index in range(5)])
        sent += 5
        time.sleep(0.02)
    # attempts at 0, ~0.25 s, ~0.75 s (doubling, with jitter), the next one past 1.5 s: a batch does not cut it short
    assert 3 <= writer.stats["retried"] <= 5, writer.stats
    writer.options = _options(store, batch_size=5, queue_size=10_000, spool_dir=options.spool_dir)  # it is back
    assert _count_within(store, sent, seconds=10) == sent  # no flush asked for: the retry alone brings it
    assert writer._backoff == 0.0  # back to writing at once
    writer.shutdown()


def test_waiting_for_a_retry_keeps_the_queue_under_its_high_water_and_gives_way_to_a_flush(store: Database) -> None:
    writer = _idle(PostgresWriter(_options(store, dsn=_dead(store), queue_size=200, batch_size=20)))  # we drive it

    def wait(backoff: float) -> float:
        writer._backoff = backoff
        started = time.monotonic()
        writer._wait_for_retry()
        return time.monotonic() - started

    writer._queue.extend(("log", _log(f"over {index}")) for index in range(150))
    assert wait(0.5) >= 0.45  # the oldest records went to disk, and the wait went on
    assert len(writer._queue) == 100 and writer.stats["spooled"] == 50
    assert wait(0.5) >= 0.45  # exactly at the high water: nothing to relieve, nothing to wake for
    with writer._condition:
        writer._flush_requested += 1
    assert wait(5.0) < 0.3  # a flush does not wait for the retry: the caller wants it durable now
    writer._flushed = writer._flush_requested
    writer._backoff = 0.0
    writer.shutdown()


def test_a_flush_during_a_long_backoff_spools_at_once(store: Database) -> None:
    writer = PostgresWriter(_options(store, dsn=_dead(store), connect_timeout=1))
    for _ in range(8):
        writer._write_items([("log", _log("grow the backoff"))])
    assert writer._backoff >= 8
    writer.submit("log", [_log(f"r{index}") for index in range(10)])
    started = time.monotonic()
    assert writer.force_flush(10)
    assert time.monotonic() - started < 2 and _spooled(writer) == 10
    writer._backoff = 0.0
    writer.shutdown()


def test_the_jitter_spreads_retries_by_a_fifth_either_way(store: Database) -> None:
    writer = PostgresWriter(_options(store, dsn=_dead(store)))
    error = psycopg.OperationalError("connection refused")
    seen = []
    for _ in range(300):
        writer._backoff = 10.0  # capped: the next wait is ten seconds, jittered
        writer._unavailable(error)
        seen.append(writer._backoff)
    assert 8.0 <= min(seen) < 8.5 and 11.5 < max(seen) <= 12.0
    writer._backoff = 0.0
    writer.shutdown()


def test_an_outage_is_retried_quietly_and_a_refusal_is_said_once(
    store: Database, sdk: CapturedTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    before = sdk.metric_total("otel_rag.sink.retried")
    writer = PostgresWriter(_options(store, dsn=_dead(store), connect_timeout=1))
    caplog.set_level(logging.DEBUG, logger="otel_rag.store")
    assert writer._write_items([("log", _log("x"))]) is False
    (record,) = [record for record in caplog.records if record.name == "otel_rag.store"]
    assert record.levelno == logging.DEBUG
    assert record.getMessage().startswith("postgres unavailable (") and "9" in record.getMessage()
    assert record.getMessage().endswith(f"; retrying in {writer._backoff:.2f}s")
    caplog.clear()
    writer.options = _options(store, dsn=store.dsn("rag_writer").replace("role-pw-for-tests", "wrong"))
    for _ in range(3):
        assert writer._write_items([("log", _log("x"))]) is False
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert message.startswith("postgres sink cannot write (") and "password" in message and "wrong" not in message
    assert message.endswith("): records are kept in the spool and retried")
    assert sdk.metric_total("otel_rag.sink.retried") - before == 4 == writer.stats["retried"]
    writer._backoff = 0.0
    writer.shutdown()


def test_a_server_that_never_answers_holds_the_writer_only_for_the_connect_timeout(store: Database) -> None:
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(8)  # the handshake completes; nobody ever reads or answers
    try:
        dsn = _dead(store).replace(":9/", f":{black_hole.getsockname()[1]}/")
        writer = PostgresWriter(_options(store, dsn=dsn, connect_timeout=1, shutdown_timeout=0.5))
        started = time.monotonic()
        assert writer._write_items([("log", _log("x"))]) is False
        assert time.monotonic() - started < 5
        writer._backoff = 0.0
        writer.submit("log", [_log("held at shutdown")])
        time.sleep(0.2)  # the thread is now inside connect(): no connection yet to cancel
        writer.shutdown()
        assert _spooled(writer) == 1
    finally:
        black_hole.close()


# -- what happens to records it cannot store ----------------------------------------------------------------------


class _Strange:
    """Neither a span nor a log record: its conversion raises, and it has no JSON form of its own."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def log_record(self) -> Any:
        raise ValueError("v" * 300)


def _poison(writer: PostgresWriter) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (writer.spool().dir / "poison.jsonl").read_text().splitlines()]


def test_an_unconvertible_record_is_described_by_its_type_and_name_within_bounds(store: Database) -> None:
    writer = PostgresWriter(_options(store), Redactor())
    nameless = _Strange("")
    del nameless.name
    writer.submit("log", [_Strange("strange token=abc123"), _Strange("n" * 20_000), nameless])
    assert writer.force_flush(10)
    first, second, third = _poison(writer)
    assert first["reason"] == "cannot convert to a row: ValueError: " + "v" * 200
    assert first["row"] == {"unconvertible": "_Strange named strange token=[REDACTED]"}
    assert len(second["row"]["unconvertible"]) == 10_000
    assert third["row"] == {"unconvertible": "_Strange named None"}
    assert writer.stats["dropped"] == 3
    writer.shutdown()


def test_records_spilled_during_an_outage_keep_the_unconvertible_apart(store: Database) -> None:
    writer = PostgresWriter(_options(store, dsn=_dead(store), connect_timeout=1))
    writer.submit("log", [_log("good"), _Strange("bad")])
    assert writer.force_flush(10)
    assert _spooled(writer) == 1 and writer.stats["spooled"] == 1
    assert [entry["row"] for entry in _poison(writer)] == [{"unconvertible": "_Strange named bad"}]
    assert writer.stats["dropped"] == 1
    writer._backoff = 0.0
    writer.shutdown()


def test_a_full_spool_drops_what_it_cannot_take_and_counts_it(store: Database, sdk: CapturedTelemetry) -> None:
    def dropped() -> float:
        return sdk.metric_total("otel_rag.sink.dropped", reason="spool_full")

    before = dropped()
    writer = PostgresWriter(_options(store, dsn=_dead(store), connect_timeout=1, spool_max_bytes=600))
    writer.submit("log", [_log(f"record {index} " + "x" * 100) for index in range(10)])
    assert writer.force_flush(10)
    spooled = _spooled(writer)
    assert 0 < spooled < 10 and writer.stats["spooled"] == spooled
    assert dropped() - before == 10 - spooled == writer.stats["dropped"]
    writer._backoff = 0.0
    writer.shutdown()


def test_a_spool_that_cannot_be_written_is_reported_and_its_records_counted(
    store: Database, sdk: CapturedTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    def dropped(reason: str) -> float:
        return sdk.metric_total("otel_rag.sink.dropped", reason=reason)

    before = dropped("spool_unwritable"), dropped("poison")
    blocker = scratch_dir("not-a-folder-") / "file"
    blocker.write_text("a file where the spool folder should be")
    writer = PostgresWriter(_options(store, dsn=_dead(store), connect_timeout=1, spool_dir=blocker / "spool"))
    caplog.set_level(logging.WARNING, logger="otel_rag.store")
    writer.submit("log", [_log("one"), _log("two"), _Strange("three")])
    assert writer.force_flush(10)
    assert writer.stats["spooled"] == 0 and writer.stats["dropped"] == 3
    assert (dropped("spool_unwritable") - before[0], dropped("poison") - before[1]) == (2, 1)
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith(f"cannot write the poison file in {blocker}/spool: ") for message in messages)
    assert any(message.startswith(f"cannot write to the spool at {blocker}/spool: ") for message in messages)
    writer._backoff = 0.0
    writer.shutdown()


def test_the_spool_keeps_the_configured_fsync_policy(store: Database) -> None:
    writer = PostgresWriter(_options(store, spool_fsync="never"))
    assert writer.spool().fsync == "never"
    writer.shutdown()


# -- redaction in the writer ---------------------------------------------------------------------------------------


def test_the_shared_writer_redacts_logs_and_spans_before_they_are_stored(store: Database) -> None:
    from opentelemetry.trace import SpanContext

    writer = shared_writer(_options(store), Redactor())
    try:
        span = ReadableSpan(
            name="call",
            context=SpanContext(7, 7, False),
            resource=RESOURCE,
            attributes={"note": "password=hunter2"},
            start_time=time.time_ns(),
            end_time=time.time_ns(),
        )
        writer.submit("log", [_log("login with password=hunter2")])
        writer.submit("span", [span])
        assert writer.force_flush(10)
        assert store.scalar("SELECT body FROM otel_rag.logs") == "login with password=[REDACTED]"
        assert store.scalar("SELECT attributes->>'note' FROM otel_rag.spans") == "password=[REDACTED]"
        writer.shutdown()
    finally:
        writer_module._shared.clear()


# -- poison isolation under a real fault ---------------------------------------------------------------------------


def test_postgres_dropping_the_connection_while_a_batch_is_split_spools_the_rest(store: Database) -> None:
    writer = PostgresWriter(_options(store))
    writer._next_orphan_check = time.monotonic() + 60
    writer.submit("log", [_log("partition")])
    assert writer.force_flush(10)
    with psycopg.connect(store.admin_dsn, autocommit=True) as admin:  # a row "kill" ends the writer's session
        admin.execute(
            "CREATE FUNCTION otel_rag.kill_on_marker() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.body = 'kill' THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NEW; END $$"
        )
        admin.execute(
            "CREATE TRIGGER kill_on_marker BEFORE INSERT ON otel_rag.logs "
            "FOR EACH ROW EXECUTE FUNCTION otel_rag.kill_on_marker()"
        )
    items = [("log", log_row("bad", record_id="n" * 300)), ("log", log_row("good 1"))]
    items += [("log", log_row("kill")), ("log", log_row("good 2"))]
    assert writer._write_items(items)  # the refused row is set aside; the half with the marker meets the outage
    assert _count(store) == 2 and _spooled(writer) == 2
    (poison,) = _poison(writer)
    assert poison["reason"].startswith('InvalidTextRepresentation: invalid input syntax for type uuid: "nnn')
    assert len(poison["reason"]) == len("InvalidTextRepresentation: ") + 200
    with psycopg.connect(store.admin_dsn, autocommit=True) as admin:
        admin.execute("DROP TRIGGER kill_on_marker ON otel_rag.logs")
    writer._backoff = 0.0
    assert writer.force_flush(10)
    assert _count(store) == 4 and writer.stats["dropped"] == 1
    writer.shutdown()


# -- days are UTC days, the window's edges included ------------------------------------------------------------------


def test_days_are_utc_days_whatever_the_local_time_zone(store: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server's TZ must not move a record to another day's partition, nor the partition window."""
    now = dt.datetime.now(dt.UTC)
    today = dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC)
    west = now.hour < 12  # pick the zone whose local date differs from the UTC date right now
    monkeypatch.setenv("TZ", "Etc/GMT+12" if west else "Etc/GMT-14")
    time.tzset()
    try:
        assert dt.datetime.now().date() != now.date()

        def at(moment: dt.datetime) -> ReadableLogRecord:
            return _log(moment.isoformat(), int(moment.timestamp()) * 10**9)

        near_midnight = today + (dt.timedelta(seconds=1) if west else dt.timedelta(hours=23, minutes=59))
        writer = PostgresWriter(_options(store))
        writer.submit("log", [at(near_midnight)])  # alone: its day's partition must be today's
        assert writer.force_flush(10)
        edges = [today - dt.timedelta(days=30) + dt.timedelta(hours=12), today + dt.timedelta(days=1, hours=12)]
        writer.submit("log", [at(moment) for moment in edges])  # the first and the last day of the window
        assert writer.force_flush(10)
        assert _count(store) == 3 and writer.stats["dropped"] == 0
        writer.shutdown()
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_spooled_segment_of_only_out_of_window_rows_is_set_aside_not_retried(store: Database) -> None:
    """Rows spooled long ago (a process killed, restarted weeks later) are outside the window: the replay must go on."""
    spool_dir = scratch_dir("spool-")
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%S.000000+00:00")
    dead = Spool(spool_dir, 1 << 20, owner="killed-long-ago", fsync="never")
    dead.append([("log", log_row("old", when=old))])
    leave_as_killed(dead)
    writer = PostgresWriter(_options(store, spool_dir=spool_dir))
    writer.submit("log", [_log("new")])
    assert writer.force_flush(10)
    assert _count(store) == 1 and writer.stats["retried"] == 0 and writer.stats["dropped"] == 1
    assert not list(spool_dir.rglob("*.seg"))
    writer.shutdown()


def test_every_retried_batch_that_meets_stored_rows_is_counted(store: Database) -> None:
    writer = PostgresWriter(_options(store))
    items = [("log", log_row("once"))]
    assert writer._write_items(list(items))
    for expected in (1, 2):
        assert writer._write_items(list(items)) and writer.stats["deduplicated_batches"] == expected
    assert _count(store) == 1
    writer.shutdown()


def test_a_record_that_fails_conversion_in_the_middle_of_a_copy_is_set_aside(
    store: Database, sdk: CapturedTelemetry
) -> None:
    from opentelemetry.trace import SpanContext

    before = sdk.metric_total("otel_rag.sink.exported", signal="traces")
    duration_before = sum(point.sum for point in sdk.metric_points("otel_rag.sink.batch.duration"))
    writer = PostgresWriter(_options(store))
    good = ReadableSpan(
        name="good", context=SpanContext(5, 5, False), resource=RESOURCE, start_time=time.time_ns(), end_time=1
    )
    broken = ReadableSpan(name="no context", context=None, resource=RESOURCE, start_time=time.time_ns())
    writer.submit("span", [good, broken])  # the broken one has a time: it gets as far as the COPY
    assert writer.force_flush(10)
    assert store.scalar("SELECT count(*) FROM otel_rag.spans") == 1
    assert [entry["reason"].split(":")[0] for entry in _poison(writer)] == ["cannot convert to a row"]
    assert writer.stats["exported"] == 1 and writer.stats["dropped"] == 1
    assert sdk.metric_total("otel_rag.sink.exported", signal="traces") - before == 1
    duration = sum(point.sum for point in sdk.metric_points("otel_rag.sink.batch.duration")) - duration_before
    assert 0 < duration < 10  # seconds spent writing, not a clock reading
    writer.shutdown()


def test_records_moved_to_disk_to_relieve_memory_keep_the_unconvertible_apart(store: Database) -> None:
    writer = _idle(PostgresWriter(_options(store, dsn=_dead(store), queue_size=4, batch_size=10)))
    with writer._condition:  # the thread stays out of it (the drop's warning would wake it)
        writer._queue.extend([("log", _Strange("bad")), *(("log", _log(f"r{index}")) for index in range(4))])
        writer._relieve_memory()  # the three oldest go to disk
        assert len(writer._queue) == 2 and writer.stats["spooled"] == 2 and writer.stats["dropped"] == 1
    assert [entry["row"] for entry in _poison(writer)] == [{"unconvertible": "_Strange named bad"}]
    writer.shutdown()


# -- freshness, a slow but finishing COPY, a segment that cannot be read ---------------------------------------------


def test_a_few_records_are_stored_within_the_flush_interval_without_a_flush(store: Database) -> None:
    writer = PostgresWriter(_options(store, flush_interval=0.05))
    writer.submit("log", [_log(f"r{index}") for index in range(3)])  # far below a batch
    assert _count_within(store, 3, seconds=5) == 3
    writer.shutdown()


def test_a_copy_that_finishes_within_the_shutdown_timeout_is_not_cancelled(store: Database) -> None:
    writer = PostgresWriter(_options(store, shutdown_timeout=10.0, flush_interval=0.01))
    writer.submit("log", [_log("make the partition")])
    assert writer.force_flush(10)
    with psycopg.connect(store.admin_dsn) as blocker:
        blocker.execute("LOCK TABLE otel_rag.logs IN ACCESS EXCLUSIVE MODE")
        writer.submit("log", [_log(f"slow {index}") for index in range(5)])
        time.sleep(0.3)  # the writer now waits inside its COPY
        threading.Timer(1.5, blocker.rollback).start()  # the lock goes away well before the deadline
        writer.shutdown()
    assert _count(store) == 6 and _spooled(writer) == 0


def test_a_spool_segment_that_cannot_be_read_is_set_aside_and_the_rest_replays(
    store: Database, sdk: CapturedTelemetry
) -> None:
    before = sdk.metric_total("otel_rag.sink.dropped", reason="spool_corrupted")
    spool_dir = scratch_dir("spool-")
    dead = Spool(spool_dir, 1 << 20, owner="killed", fsync="never")
    dead.append([("log", log_row("spooled"))])
    leave_as_killed(dead)
    (spool_dir / "killed" / "00000000000000000001-000001.seg").mkdir()  # the oldest "segment": reading it fails
    writer = PostgresWriter(_options(store, spool_dir=spool_dir))
    writer.submit("log", [_log("new")])
    assert writer.force_flush(10)
    assert _count(store) == 2 and writer.stats["dropped"] == 1
    assert sdk.metric_total("otel_rag.sink.dropped", reason="spool_corrupted") - before == 1  # counted by reason
    assert [path.name for path in spool_dir.rglob("*.unreadable")] == ["00000000000000000001-000001.unreadable"]
    assert not list(spool_dir.rglob("*.seg"))
    writer.shutdown()


# -- the queue's bound and its one warning, when the thread wakes, replay in batches, what shutdown finds --------------


def test_a_full_queue_takes_what_fits_drops_the_rest_and_says_so_once(
    store: Database, sdk: CapturedTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    before = sdk.metric_total("otel_rag.sink.dropped", reason="queue_full")
    caplog.set_level(logging.WARNING, logger="otel_rag.store")
    writer = _idle(PostgresWriter(_options(store, dsn=_dead(store), queue_size=10, connect_timeout=1)))
    with writer._condition:  # the thread stays out of it: the queue is exactly what submit() left
        writer.submit("log", [_log(f"first {index}") for index in range(4)])
        writer.submit("log", [_log(f"second {index}") for index in range(10)])
        writer.submit("log", [_log("one more")])
        assert [record.log_record.body for _, record in writer._queue] == [
            *(f"first {index}" for index in range(4)),
            *(f"second {index}" for index in range(6)),
        ]
    assert writer.stats["queued"] == 10 and writer.stats["dropped"] == 5
    assert sdk.metric_total("otel_rag.sink.dropped", reason="queue_full") - before == 5
    writer._write_pending_warnings()
    warnings = [record.getMessage() for record in caplog.records if record.name == "otel_rag.store"]
    assert warnings == [
        "otel-rag dropped 4 records: more arrived than OTEL_RAG_POSTGRES_QUEUE_SIZE=10 while the writer was behind; "
        "further drops are counted in otel_rag.sink.dropped"
    ]
    writer._backoff = 0.0
    writer.shutdown()


@pytest.mark.parametrize("reason", ["spool_full", "spool_unwritable", "spool_corrupted", "poison", "shutdown"])
def test_the_first_drop_says_why_with_the_setting_to_change(store: Database, reason: str) -> None:
    writer = _idle(PostgresWriter(_options(store, spool_max_bytes=4096)))
    writer._dropped(2, reason)
    writer._dropped(3, "queue_full")
    (message,) = writer._pending_warnings  # said once: the second drop is only counted
    spool_dir = writer.options.spool_dir
    expected = {
        "spool_full": f"the spool at {spool_dir} reached OTEL_RAG_SPOOL_MAX_BYTES=4096",
        "spool_unwritable": f"the spool at {spool_dir} could not be written",
        "spool_corrupted": f"a spool segment in {spool_dir} failed its checksum",
        "poison": f"they are kept in {spool_dir}/*/poison.jsonl",
        "shutdown": "they arrived after the sink had shut down",
    }[reason]
    assert message.startswith("otel-rag dropped 2 records: ") and expected in message, message
    assert writer.stats["dropped"] == 5
    writer.spool()
    assert writer._poison_path() == str(writer.spool().dir / "poison.jsonl")  # once the spool exists: its own file
    writer.shutdown()


def test_records_wait_for_the_flush_interval_until_a_batch_or_half_the_queue_is_waiting(store: Database) -> None:
    writer = _idle(PostgresWriter(_options(store, flush_interval=30.0, batch_size=1000, queue_size=8)))
    writer.submit("log", [_log("the first wakes the idle thread, which then waits the flush interval")])
    time.sleep(0.2)  # the thread is back asleep: a wake-up now would be the next submit's
    writer.submit("log", [_log(f"r{index}") for index in range(3)])  # four queued: at the high water, not over it
    time.sleep(0.5)
    assert _count(store) == 0  # batched: nothing is written one record at a time
    writer.submit("log", [_log("over the high water")])  # five of eight: the thread wakes and writes
    assert _count_within(store, 5, seconds=5) == 5
    writer.shutdown()

    writer = _idle(PostgresWriter(_options(store, flush_interval=30.0, batch_size=3)))
    writer.submit("log", [_log("first")])
    time.sleep(0.2)
    writer.submit("log", [_log("second"), _log("a full batch")])
    assert _count_within(store, 8, seconds=5) == 8
    writer.shutdown()


def test_a_spooled_segment_larger_than_a_batch_replays_every_row_once(store: Database) -> None:
    spool_dir = scratch_dir("spool-")
    dead = Spool(spool_dir, 1 << 20, owner="killed", fsync="never")
    dead.append([("log", log_row(f"spooled {index}")) for index in range(7)])
    dead._close_current()  # a second segment after the first
    dead.append([("log", log_row(f"later {index}")) for index in range(2)])
    leave_as_killed(dead)
    writer = PostgresWriter(_options(store, spool_dir=spool_dir, batch_size=2))
    assert writer.force_flush(10)
    assert _count(store) == 9 and writer.stats["replayed"] == 9  # counted across segments
    assert writer.stats["deduplicated_batches"] == 0  # batches of two (and the odd ones): none sent twice
    assert not list(spool_dir.rglob("*.seg"))
    writer.shutdown()


def test_a_running_writer_with_its_own_spool_adopts_what_a_killed_process_left(store: Database) -> None:
    spool_dir = scratch_dir("spool-")
    writer = PostgresWriter(_options(store, spool_dir=spool_dir))
    writer.spool()  # this process has spooled before (say, during an outage) and replayed it all
    writer.submit("log", [_log("own")])
    assert writer.force_flush(10) and _count(store) == 1
    dead = Spool(spool_dir, 1 << 20, owner="killed", fsync="never")
    dead.append([("log", log_row("left by a killed worker"))])
    leave_as_killed(dead)
    writer._next_orphan_check = time.monotonic()  # the periodic check is due
    writer.submit("log", [_log("own again")])
    assert writer.force_flush(10)
    assert _count(store) == 3 and writer.stats["replayed"] == 1
    assert writer._next_orphan_check > time.monotonic() + 50  # and the next check is a minute away
    writer.shutdown()


def test_during_an_outage_records_wait_in_memory_until_a_flush_asks_for_durability(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: 1.0)  # the writer backs off 0.25, 0.5, 1, 2 s exactly
    writer = PostgresWriter(_options(store, dsn=_dead(store), connect_timeout=1))
    writer.submit("log", [_log("the batch that met the outage goes to disk")])
    deadline = time.monotonic() + 10
    while writer.stats["retried"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.submit("log", [_log(f"r{index}") for index in range(5)])
    while writer.stats["retried"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.stats["spooled"] == 1 and len(writer._queue) == 5  # the later ones cost no disk write
    with writer._condition:
        retried = writer.stats["retried"]
    assert writer._backoff <= 0.5 and writer.force_flush(1.0)  # a flush means durable: at once, even early on
    assert writer.stats["retried"] == retried + 1  # one more try, then onto disk: not a wait for longer backoffs
    assert writer.stats["spooled"] == 6 and _spooled(writer) == 6 and not writer._queue
    writer._backoff = 0.0
    writer.shutdown()


def test_records_the_thread_never_took_are_spooled_at_shutdown(store: Database) -> None:
    writer = _idle(PostgresWriter(_options(store, shutdown_timeout=0.5)))
    with writer._condition:  # the thread has stopped (as after a stuck COPY was given up on)
        writer._stopping = True
        writer._condition.notify_all()
    writer._thread.join(5)
    writer._stopping = False
    writer.submit("log", [_log("one"), _log("two")])
    writer.shutdown()
    assert _spooled(writer) == 2 and _count(store) == 0


def test_a_cycle_that_fails_unexpectedly_is_logged_and_the_thread_goes_on(
    store: Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = _idle(PostgresWriter(_options(store)))
    caplog.set_level(logging.ERROR, logger="otel_rag.store")
    replay = writer._replay_spool
    calls = iter([RuntimeError("a bug"), None])

    def fails_once() -> bool:
        error = next(calls, None)
        if error is not None:
            raise error
        return replay()

    monkeypatch.setattr(writer, "_replay_spool", fails_once)
    writer.submit("log", [_log("survives")])
    assert writer.force_flush(10)
    assert _count(store) == 1
    (record,) = [record for record in caplog.records if record.name == "otel_rag.store"]
    assert record.getMessage() == "postgres writer cycle failed" and record.exc_info is not None
    writer.shutdown()


# -- shutdown writes to Postgres when it is up, keeps a late record, never holds the process -------------------------


def test_shutdown_writes_what_is_queued_into_postgres_when_it_is_up(store: Database) -> None:
    writer = _idle(PostgresWriter(_options(store, flush_interval=30.0, batch_size=1000)))
    with writer._condition:  # queued, the thread asleep: only shutdown's flush can write them
        writer._queue.extend(("log", _log(f"queued {index}")) for index in range(5))
    writer.shutdown()
    assert _count(store) == 5 and _spooled(writer) == 0  # into Postgres, not merely onto disk


def test_a_record_that_arrives_between_the_last_flush_and_the_close_is_spooled(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = PostgresWriter(_options(store))
    flush = writer.force_flush

    def flush_then_one_more(timeout: float = 10.0) -> bool:
        flushed = flush(timeout)
        writer.submit("log", [_log("late")])  # another thread's record, after the flush, before the sink closed
        return flushed

    monkeypatch.setattr(writer, "force_flush", flush_then_one_more)
    writer.submit("log", [_log("on time")])
    writer.shutdown()
    assert _count(store) + _spooled(writer) == 2  # nothing lost


def test_the_writer_thread_never_keeps_the_process_alive(store: Database) -> None:
    writer = PostgresWriter(_options(store))
    assert writer._thread.daemon  # an app that never shuts the sink down still exits
    writer.shutdown()
    script = (
        "from pathlib import Path; from otel_rag._store.writer import PostgresWriter, WriterOptions; "
        f"PostgresWriter(WriterOptions(dsn={store.dsn('rag_writer')!r}, spool_dir=Path({str(scratch_dir('s-'))!r}))); "
        "print('exiting')"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "exiting" in result.stdout, result.stderr
    assert time.monotonic() - started < 10


def test_a_full_batch_queued_during_a_copy_is_written_right_after_it(store: Database) -> None:
    writer = _idle(PostgresWriter(_options(store, flush_interval=30.0, batch_size=3)))
    writer.submit("log", [_log("make the partition")])
    assert writer.force_flush(10)
    with psycopg.connect(store.admin_dsn) as blocker:
        blocker.execute("LOCK TABLE otel_rag.logs IN ACCESS EXCLUSIVE MODE")
        writer.submit("log", [_log(f"first {index}") for index in range(3)])  # a full batch: the thread COPYs
        time.sleep(0.3)  # ...and waits inside its COPY
        writer.submit("log", [_log(f"second {index}") for index in range(3)])  # another full batch meanwhile
        time.sleep(0.2)
        blocker.rollback()
    assert _count_within(store, 7, seconds=5) == 7  # not after the 30 s flush interval
    writer.shutdown()


def test_an_idle_writer_stores_a_few_records_within_the_flush_interval(store: Database) -> None:
    writer = _idle(PostgresWriter(_options(store, flush_interval=0.05)))  # asleep with nothing to do
    writer.submit("log", [_log(f"r{index}") for index in range(3)])  # far below a batch, no flush asked
    assert _count_within(store, 3, seconds=2) == 3
    writer.shutdown()


def test_the_sink_gauges_are_registered_once_per_process_and_read_every_writer(
    store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[tuple[Any, Any]] = []
    monkeypatch.setattr(writer_module, "_gauges_registered", False)
    monkeypatch.setattr(telemetry_metrics, "register_sink_gauges", lambda *callbacks: registered.append(callbacks))
    first = _idle(PostgresWriter(_options(store, dsn=_dead(store), connect_timeout=1)))
    second = _idle(PostgresWriter(_options(store, dsn=_dead(store), connect_timeout=1)))
    assert registered == [(writer_module.queued_records, writer_module.spooled_bytes)]  # with the first writer only
    with first._condition, second._condition:
        first._queue.extend(("log", _log("a")) for _ in range(2))
        second._queue.append(("log", _log("b")))
        queued = writer_module.queued_records()
    assert queued >= 3  # every writer of the process (other tests' writers may still hold some)
    second.spool().append([("log", log_row("spooled"))])
    assert writer_module.spooled_bytes() >= second.spool().size > 0
    for writer in (first, second):
        writer._backoff = 0.0
        writer.shutdown()
