"""The one background writer behind the Postgres log and span exporters.

The exporters call `submit()`, which only appends to a bounded in-memory queue (O(1), no I/O). A daemon thread
takes batches (by size or after the flush interval), turns records into rows, and COPYs them into Postgres in one
transaction (copy.py). Idempotency: each row carries a client-generated key; a batch whose commit outcome is
unknown is retried, and if the retry meets rows already there it goes through a staging table with ON CONFLICT DO
NOTHING, so nothing is stored twice.

When Postgres is down or slow the thread retries with capped exponential backoff; the queue keeps accepting, and
once it passes its high-water mark the writer thread moves the oldest records to the local spool (spool.py), which
is replayed, oldest first, before anything newer once Postgres answers again, also after a restart. The exporters'
side never does I/O: past OTEL_RAG_POSTGRES_QUEUE_SIZE records are refused, counted and reported (the writer
spills long before that unless the disk cannot keep up). Records are otherwise dropped only when the spool is full,
and then they are counted and reported once.

Bad records never wedge the sink: a record Postgres refuses for its content is isolated by splitting the batch, a
record that cannot be turned into a row at all, or whose time lies outside the partition window around today
(a millisecond timestamp given as nanoseconds, a clock years off), is set aside alone; all go to the spool's
poison file for a person to look at, and the rest of the batch, later batches and spool replays all land.
Shutdown is idempotent and safe from several threads (the log and span providers shut down in parallel). The
thread runs with instrumentation suppressed, so its own psycopg calls never become spans of the app.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from otel_rag._store import problems
from otel_rag._store.copy import CONNECTION_ERRORS, CONTENT_ERRORS, TABLES, copy_batch
from otel_rag._store.migrate import ensure_partitions
from otel_rag._store.rows import Limits, log_row, span_row
from otel_rag._store.spool import Item, Spool
from otel_rag._telemetry import metrics
from otel_rag._telemetry.redaction import Redactor, redact_log_record, redact_span, safe_str
from otel_rag._telemetry.tracing import without_instrumentation

__all__ = ["PostgresWriter", "WriterOptions", "shared_writer"]

_logger = logging.getLogger("otel_rag.store")
_DROP_REASONS = {
    "spool_full": "the spool at {dir} reached OTEL_RAG_SPOOL_MAX_BYTES={limit}",
    "spool_unwritable": "the spool at {dir} could not be written (a full disk, or no permission)",
    "spool_corrupted": "a spool segment in {dir} failed its checksum or could not be read (kept as *.unreadable)",
    "poison": "they could not be stored as they are; they are kept in {poison}",
    "queue_full": "more arrived than OTEL_RAG_POSTGRES_QUEUE_SIZE={queue} while the writer was behind",
    "shutdown": "they arrived after the sink had shut down",
}
# Partitions are created for days in this window around today (UTC); a record outside it is set aside.
PARTITION_PAST_DAYS = 30
PARTITION_FUTURE_DAYS = 1
_ORPHAN_CHECK_S = 60.0  # how often an idle writer looks for spool segments left by a process that died


class _Unconvertible:
    """A record that could not be turned into a row (its conversion raised): quarantined, never retried."""

    __slots__ = ("description", "reason")

    def __init__(self, record: Any, error: BaseException, redactor: Redactor | None) -> None:
        self.reason = f"cannot convert to a row: {type(error).__name__}: {safe_str(error)[:200]}"
        try:
            description = record.to_json(indent=None)  # the SDK's own JSON form of spans and log records
        except Exception:
            description = f"{type(record).__name__} named {safe_str(getattr(record, 'name', None))}"
        description = safe_str(description)[:10_000]
        self.description = redactor.scrub_text(description) if redactor is not None else description


@dataclass(frozen=True)
class WriterOptions:
    dsn: str
    schema: str = "otel_rag"
    batch_size: int = 2000
    flush_interval: float = 0.05
    queue_size: int = 100_000
    spool_dir: Path = Path(".otel-rag/spool")
    spool_max_bytes: int = 1 << 30
    spool_fsync: str = "always"
    shutdown_timeout: float = 10.0
    limits: Limits = field(default_factory=Limits)
    connect_timeout: int = 3


class PostgresWriter:
    def __init__(self, options: WriterOptions, redactor: Redactor | None = None) -> None:
        self.options = options
        self.redactor = redactor
        self._queue: collections.deque[tuple[str, Any]] = collections.deque()
        self._condition = threading.Condition()
        self._stopping = False
        self._flush_requested = 0
        self._flushed = 0
        self._connection: psycopg.Connection[Any] | None = None
        self._partitions: set[dt.date] = set()
        self._spool: Spool | None = None
        self._backoff = 0.0
        self._warned_drop = False
        self._pending_warnings: list[str] = []  # written by the writer thread, never by the exporters' callers
        self._last_problem = ""
        self._next_orphan_check = 0.0
        self._shutdown_lock = threading.Lock()
        self._closed = False
        self.stats = collections.Counter[str]()
        self._thread = self._start_thread()
        _WRITERS.add(self)
        _register_gauges_once()
        if hasattr(os, "register_at_fork"):
            weak_after_fork = weakref.WeakMethod(self._after_fork)

            def after_fork() -> None:
                method = weak_after_fork()
                if method is not None:
                    method()

            os.register_at_fork(after_in_child=after_fork)

    # -- the exporters' side: never blocks on I/O ---------------------------------------------------------------

    def submit(self, kind: str, records: Sequence[Any]) -> None:
        """Queue records for the writer thread: O(1), no I/O, never blocks on the database or the disk."""
        with self._condition:
            if self._closed:
                refused, reason = len(records), "shutdown"
            else:
                was_idle = not self._queue
                room = self.options.queue_size - len(self._queue)
                accepted = records if room >= len(records) else records[: max(room, 0)]
                self._queue.extend((kind, record) for record in accepted)
                refused, reason = len(records) - len(accepted), "queue_full"
                if was_idle or len(self._queue) >= self.options.batch_size or len(self._queue) > self._high_water:
                    self._condition.notify()
                self.stats["queued"] += len(accepted)
        if refused:
            self._dropped(refused, reason)

    @property
    def _high_water(self) -> int:
        return self.options.queue_size // 2

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted before this call is in Postgres (or in the spool)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            self._flush_requested += 1
            ticket = self._flush_requested
            self._condition.notify()
            while self._flushed < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._condition.wait(remaining)
        return True

    def shutdown(self) -> None:
        """Write what is buffered within the shutdown timeout; spool whatever Postgres could not take.

        Idempotent and safe from several threads: a second caller waits for the first to finish.
        """
        with self._shutdown_lock:
            if self._closed:
                return
            deadline = time.monotonic() + self.options.shutdown_timeout
            flushed = self.force_flush(self.options.shutdown_timeout)
            with self._condition:
                self._stopping = True
                self._condition.notify_all()
            self._thread.join(max(0.5, deadline - time.monotonic()))
            if self._thread.is_alive():  # stuck in a COPY past the deadline: cancel it, its batch gets spooled
                self._cancel_query()
                self._thread.join(5.0)
            with self._condition:
                self._closed = True
            leftovers = self._drain_queue()
            if leftovers or not flushed:
                self._spill(leftovers)
            self._write_pending_warnings()
            if self._spool is not None:
                self._spool.close()
            self._close_connection()

    # -- the writer thread ---------------------------------------------------------------------------------------

    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(
            target=without_instrumentation(self._run), name="otel-rag-postgres-writer", daemon=True
        )
        thread.start()
        return thread

    def _after_fork(self) -> None:
        """In a forked worker: fresh lock, queue, connection, spool and thread; the parent keeps its own."""
        self._condition = threading.Condition()
        self._queue = collections.deque()
        # The parent's connection: never used here, and never finalised here either (closing it would send the
        # server a Terminate on the socket the parent still uses), so it is parked for the child's lifetime.
        _INHERITED_CONNECTIONS.append(self._connection)
        self._connection = None
        if self._spool is not None:
            self._spool.release_after_fork()
        self._spool = None
        self._flush_requested = self._flushed = 0
        self._shutdown_lock = threading.Lock()
        self._closed = self._stopping = False
        self._thread = self._start_thread()

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    if self._stopping:
                        return
                    if self._flush_pending() or len(self._queue) >= self.options.batch_size:
                        break
                    timeout = self._wait_time()
                    if timeout is None:  # idle: sleep until records arrive, a flush is asked for, or stop
                        self._condition.wait()
                        continue
                    self._condition.wait(timeout)
                    break
                ticket = self._flush_requested
            try:
                self._cycle()
            except Exception:  # never let the thread die: log, back off, go on
                _logger.exception("postgres writer cycle failed")
                time.sleep(1.0)
            if ticket > self._flushed and self._backoff > 0:
                self._spill(self._drain_queue())  # Postgres is away: a flush means "durable", so spool it all
            self._write_pending_warnings()
            with self._condition:
                if ticket > self._flushed and not self._queue:
                    self._flushed = ticket
                    self._condition.notify_all()

    def _wait_time(self) -> float | None:
        """How long the thread may sleep before it has work: None when nothing at all is waiting."""
        if self._queue:
            return self.options.flush_interval
        if self._backoff > 0 or (self._spool is not None and self._spool.has_data()):
            return max(self._backoff, self.options.flush_interval)
        if time.monotonic() >= self._next_orphan_check:
            return self.options.flush_interval
        return None

    def _flush_pending(self) -> bool:
        return self._flush_requested > self._flushed

    def _cycle(self) -> None:
        """One pass: replay the spool (oldest first), then write queued batches while Postgres takes them."""
        if self._backoff > 0:
            self._wait_for_retry()
        if not self._replay_spool():
            self._relieve_memory()
            return
        while True:
            batch = self._take(self.options.batch_size)
            if not batch:
                return
            if not self._write_items(batch):
                self._spill(batch)  # keep order: these are older than anything still queued
                self._relieve_memory()
                return
            self._relieve_memory()  # Postgres slower than the app: memory stays bounded, the spool takes the rest

    def _wait_for_retry(self) -> None:
        """Wait out the backoff, unless asked to flush or stop; meanwhile keep the queue under its high water."""
        deadline = time.monotonic() + self._backoff
        while True:
            with self._condition:
                self._condition.wait_for(
                    lambda: self._stopping or self._flush_pending() or len(self._queue) > self._high_water,
                    timeout=max(0.0, deadline - time.monotonic()),
                )
                over = len(self._queue) > self._high_water and not (self._stopping or self._flush_pending())
            if not over or time.monotonic() >= deadline:
                return
            self._relieve_memory()

    def _take(self, count: int) -> list[tuple[str, Any]]:
        with self._condition:
            return [self._queue.popleft() for _ in range(min(count, len(self._queue)))]

    def _drain_queue(self) -> list[tuple[str, Any]]:
        with self._condition:
            items = list(self._queue)
            self._queue.clear()
        return items

    def _relieve_memory(self) -> None:
        """Keep the queue under half its size by moving the oldest records to disk (Postgres away or behind)."""
        while len(self._queue) > self._high_water:
            self._spill(self._take(min(self.options.batch_size, len(self._queue) - self._high_water)))

    def _row(self, kind: str, value: Any) -> Any:
        """The table row of a queued item: an OTel record is redacted and converted; a row (from the spool) is
        itself. A record whose conversion fails becomes an _Unconvertible, quarantined after the batch."""
        if isinstance(value, _Unconvertible):
            return value
        if isinstance(value, tuple):  # a row from the spool, perhaps written before a column was added
            missing = len(TABLES[kind][1]) - len(value)
            return (*value, *([None] * missing)) if missing > 0 else value
        try:
            if kind == "log":
                record = redact_log_record(value, self.redactor) if self.redactor is not None else value
                return log_row(record, self.options.limits)
            span = redact_span(value, self.redactor) if self.redactor is not None else value
            return span_row(span, self.options.limits)
        except Exception as error:
            return _Unconvertible(value, error, self.redactor)

    def _to_rows(self, batch: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return [(kind, self._row(kind, value)) for kind, value in batch]

    # -- spool -----------------------------------------------------------------------------------------------------

    def spool(self) -> Spool:
        if self._spool is None:
            self._spool = Spool(self.options.spool_dir, self.options.spool_max_bytes, self.options.spool_fsync)
        return self._spool

    def _spill(self, batch: list[tuple[str, Any]]) -> None:
        if batch:
            rows = self._to_rows(batch)
            self._quarantine([item for item in rows if isinstance(item[1], _Unconvertible)])
            self._spill_items([item for item in rows if not isinstance(item[1], _Unconvertible)])

    def _spill_items(self, items: list[Item]) -> None:
        if not items:
            return
        reason = "spool_full"
        try:
            written, refused = self.spool().append(items)
        except (OSError, ValueError) as error:  # a full or read-only disk, a spool already closed
            self._warn_later(f"cannot write to the spool at {self.options.spool_dir}: {error}")
            written, refused, reason = 0, len(items), "spool_unwritable"
        self.stats["spooled"] += written
        metrics.sink_spooled.add(written)
        if refused:
            self._dropped(refused, reason)

    def _dropped(self, count: int, reason: str) -> None:
        """Count records that will not reach Postgres; the first time, say why (from the writer thread)."""
        self.stats["dropped"] += count
        metrics.sink_dropped.add(count, {"reason": reason})
        if not self._warned_drop:
            self._warned_drop = True
            why = _DROP_REASONS[reason].format(
                dir=self.options.spool_dir,
                limit=self.options.spool_max_bytes,
                queue=self.options.queue_size,
                poison=self._poison_path(),
            )
            self._warn_later(
                f"otel-rag dropped {count} records: {why}; further drops are counted in otel_rag.sink.dropped"
            )

    def _poison_path(self) -> str:
        return (
            str(self._spool.dir / "poison.jsonl")
            if self._spool is not None
            else f"{self.options.spool_dir}/*/poison.jsonl"
        )

    def _warn_later(self, message: str) -> None:
        """Queue a warning for the writer thread to log (logging writes to stdout: not on the caller's thread)."""
        self._pending_warnings.append(message)
        with self._condition:
            self._condition.notify()

    def _write_pending_warnings(self) -> None:
        while self._pending_warnings:
            _logger.warning(self._pending_warnings.pop(0))

    def _quarantine(self, items: list[tuple[str, Any]], reason: str | None = None) -> None:
        """Set records aside in the spool's poison file, each alone, with the reason; they are counted as dropped."""
        if not items:
            return
        by_reason: dict[str, list[tuple[str, Any]]] = {}
        for kind, value in items:
            row = value if isinstance(value, (tuple, _Unconvertible)) else self._row(kind, value)
            why = row.reason if isinstance(row, _Unconvertible) else reason or "refused"
            stored = {"unconvertible": row.description} if isinstance(row, _Unconvertible) else row
            by_reason.setdefault(why, []).append((kind, stored))
        try:
            for why, group in by_reason.items():
                self.spool().quarantine(group, why)
        except (OSError, ValueError) as error:
            self._warn_later(f"cannot write the poison file in {self.options.spool_dir}: {error}")
        self._dropped(len(items), "poison")

    def _replay_spool(self) -> bool:
        """Write spooled segments, oldest first; False while Postgres is unavailable."""
        if self._spool is None:
            if time.monotonic() < self._next_orphan_check:
                return True
            self._next_orphan_check = time.monotonic() + _ORPHAN_CHECK_S
            if not any(self.options.spool_dir.glob("*/*.seg")):  # left by an earlier run of this service?
                return True
        spool = self.spool()
        if not spool.has_data() and time.monotonic() >= self._next_orphan_check:
            self._next_orphan_check = time.monotonic() + _ORPHAN_CHECK_S
            spool.adopt_orphans()
        while spool.has_data():
            segment = spool.oldest()
            if segment is None:
                return True
            if segment.corrupted:
                self._dropped(segment.corrupted, "spool_corrupted")
            for start in range(0, len(segment.items), self.options.batch_size):
                if not self._write_items(segment.items[start : start + self.options.batch_size]):
                    return False  # the segment stays; rows already written are skipped as duplicates next time
            spool.remove(segment)
            self.stats["replayed"] += len(segment.items)
        return True

    # -- Postgres ----------------------------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(
                self.options.dsn, autocommit=True, connect_timeout=self.options.connect_timeout
            )
        return self._connection

    def _close_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None

    def _cancel_query(self) -> None:
        """Ask the server to cancel what the writer thread is waiting for (from the shutting-down thread)."""
        connection = self._connection
        if connection is not None and not connection.closed:
            with contextlib.suppress(psycopg.Error, OSError):
                connection.cancel_safe(timeout=2.0)

    def _write_items(self, items: list[tuple[str, Any]]) -> bool:
        """COPY the items; True when they are stored (or set aside as poison), False when Postgres is away.

        Records are converted to rows while the COPY streams, so the server indexes one part of the batch while
        this thread converts the next; converted rows replace the records in `items`, ready for a retry. Records
        outside the partition window, and records that cannot be converted, are taken out and quarantined.
        """
        days = self._days_in_window(items)
        if not items:
            return True
        started = time.perf_counter()
        try:
            connection = self._connect()
            self._ensure_partitions(connection, days)
            try:
                copy_batch(connection, self.options.schema, items, self._row, staged=False)
            except psycopg.errors.UniqueViolation:
                self.stats["deduplicated_batches"] += 1
                copy_batch(connection, self.options.schema, items, self._row, staged=True)
        except CONTENT_ERRORS as error:
            self._isolate_poison(items, error)
            return True
        except psycopg.Error as error:
            self._unavailable(error)
            return False
        self._backoff = 0.0
        unconvertible = [item for item in items if isinstance(item[1], _Unconvertible)]
        self._quarantine(unconvertible)
        self._record_success(items, time.perf_counter() - started, stored=len(items) - len(unconvertible))
        return True

    def _days_in_window(self, items: list[tuple[str, Any]]) -> set[dt.date]:
        """The UTC days of the items; items outside the partition window are taken out and quarantined."""
        today = dt.datetime.now(dt.UTC).date()
        first, last = today - dt.timedelta(days=PARTITION_PAST_DAYS), today + dt.timedelta(days=PARTITION_FUTURE_DAYS)
        days: set[dt.date] = set()
        outside: list[tuple[str, Any]] = []
        kept: list[tuple[str, Any]] = []
        for item in items:
            day = _day(item[1])
            if day is None or not first <= day <= last:
                outside.append(item)
            else:
                if day not in days:
                    days.add(day)
                kept.append(item)
        if outside:
            items[:] = kept
            self._quarantine(outside, f"its time is outside the partition window ({first} to {last}, UTC)")
        return days

    def _unavailable(self, error: psycopg.Error) -> None:
        self._close_connection()
        self._backoff = min(max(self._backoff * 2, 0.25), 10.0) * random.uniform(0.8, 1.2)  # noqa: S311
        self.stats["retried"] += 1
        metrics.sink_retried.add(1)
        text = problems.describe(error)
        # An outage (refused, timed out, dropped, starting up) is retried quietly. A server that answers no (wrong
        # password, no such database or role, no privilege) is a problem a person must fix: said once, loudly.
        if isinstance(error, CONNECTION_ERRORS) and not problems.refused_by_server(error):
            _logger.debug("postgres unavailable (%s); retrying in %.2fs", text, self._backoff)
        elif text != self._last_problem:
            _logger.error("postgres sink cannot write (%s): records are kept in the spool and retried", text)
        self._last_problem = text

    def _record_success(self, items: list[tuple[str, Any]], seconds: float, stored: int) -> None:
        logs = sum(1 for kind, value in items if kind == "log" and not isinstance(value, _Unconvertible))
        self.stats["exported"] += stored
        metrics.sink_batch_duration.record(seconds)
        if logs:
            metrics.sink_exported.add(logs, {"signal": "logs"})
        if stored - logs:
            metrics.sink_exported.add(stored - logs, {"signal": "traces"})

    def _ensure_partitions(self, connection: psycopg.Connection[Any], days: set[dt.date]) -> None:
        missing = days - self._partitions
        if missing:
            ensure_partitions(connection, self.options.schema, min(missing), max(missing))
            self._partitions |= set(_days_between(min(missing), max(missing)))

    def _isolate_poison(self, items: list[tuple[str, Any]], error: psycopg.Error) -> None:
        """Split the batch until the rows Postgres refuses are alone; write the others, quarantine those."""
        if len(items) == 1:
            first_line = (str(error).splitlines() or [""])[0][:200]
            self._quarantine(items, f"{type(error).__name__}: {first_line}")
            self._warn_later(f"a record was refused by Postgres and quarantined in {self._poison_path()}: {first_line}")
            return
        middle = len(items) // 2
        for half in (items[:middle], items[middle:]):
            if not self._write_items(half):
                self._spill(half)


def _day(value: Any) -> dt.date | None:
    """The UTC day (partition) of a queued record or row; None when it has no usable time."""
    try:
        if isinstance(value, tuple):
            return dt.date.fromisoformat(str(value[0])[:10])
        if isinstance(value, _Unconvertible):
            return None
        log = getattr(value, "log_record", None)
        nanoseconds = (log.timestamp or log.observed_timestamp) if log is not None else value.start_time
        return dt.datetime.fromtimestamp(int(nanoseconds or 0) / 1e9, dt.UTC).date()
    except (ValueError, OverflowError, OSError, TypeError, AttributeError, IndexError):
        return None


def _days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=offset) for offset in range((last - first).days + 1)]


# -- one writer per (dsn, schema) per process, shared by the log and span exporters ---------------------------

_WRITERS: weakref.WeakSet[PostgresWriter] = weakref.WeakSet()
_INHERITED_CONNECTIONS: list[psycopg.Connection[Any] | None] = []
_shared: dict[tuple[str, str], PostgresWriter] = {}
_shared_lock = threading.Lock()


def shared_writer(options: WriterOptions, redactor: Redactor | None = None) -> PostgresWriter:
    with _shared_lock:
        key = (options.dsn, options.schema)
        writer = _shared.get(key)
        if writer is None or writer._stopping:
            writer = _shared[key] = PostgresWriter(options, redactor)
        elif redactor is not None and writer.redactor is None:
            writer.redactor = redactor
        return writer


def queued_records() -> int:
    return sum(len(writer._queue) for writer in list(_WRITERS))


def spooled_bytes() -> int:
    return sum(writer._spool.size for writer in list(_WRITERS) if writer._spool is not None)


_gauges_registered = False
_gauges_lock = threading.Lock()


def _register_gauges_once() -> None:
    """The sink's gauges exist only in processes that have a sink (registered with the first writer)."""
    global _gauges_registered
    with _gauges_lock:
        if not _gauges_registered:
            _gauges_registered = True
            metrics.register_sink_gauges(queued_records, spooled_bytes)
