"""The one background writer behind the Postgres log and span exporters.

The exporters call `submit()`, which only appends to a bounded in-memory queue (O(1), no I/O). A daemon thread
takes batches (by size or after the flush interval), turns records into rows, and COPYs them into Postgres in one
transaction. Idempotency: each row carries a client-generated key; a batch whose commit outcome is unknown is
retried, and if the retry meets rows already there it goes through a staging table with ON CONFLICT DO NOTHING,
so nothing is stored twice.

When Postgres is down or slow the thread retries with capped exponential backoff; the queue keeps accepting, and
once it passes its high-water mark the oldest records move to the local spool (spool.py), which is replayed, oldest
first, before anything newer once Postgres answers again, also after a restart. Records are dropped only when the
spool is full, and then they are counted and reported once. A row Postgres rejects for its content is isolated by
splitting the batch and kept in the spool's poison file, so it never blocks the rest.
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
from psycopg import sql

from .. import metrics
from ..redaction import Redactor, redact_span
from .migrate import ensure_partitions
from .rows import LOG_COLUMNS, SPAN_COLUMNS, Limits, log_row, span_row
from .spool import Item, Spool

__all__ = ["PostgresWriter", "WriterOptions", "shared_writer"]

_logger = logging.getLogger("otel_rag.store")
_TABLES = {"log": ("logs", LOG_COLUMNS), "span": ("spans", SPAN_COLUMNS)}
_STAGE_TYPES = {
    "time": "timestamptz",
    "end_time": "timestamptz",
    "duration_ms": "double precision",
    "record_id": "uuid",
    "severity_number": "smallint",
    "attributes": "jsonb",
    "events": "jsonb",
    "resource": "jsonb",
    "cost_usd": "numeric(18, 9)",
    "input_tokens": "integer",
    "output_tokens": "integer",
} | {
    column: "text"
    for column in (
        "trace_id",
        "span_id",
        "parent_span_id",
        "service_name",
        "user_id",
        "severity",
        "logger",
        "body",
        "name",
        "kind",
        "status",
        "status_message",
        "scope",
    )
}
_CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
# Errors about a row's content: the row is poison, the rest of the batch is fine. Any other error (privileges, a
# missing table, a server problem) is about the environment: retried and spooled like an outage, never dropped.
_CONTENT_ERRORS = (psycopg.errors.DataError, psycopg.errors.IntegrityError)
_DROP_REASONS = {
    "spool_full": "the spool at {dir} reached OTEL_RAG_SPOOL_MAX_BYTES={limit}",
    "spool_corrupted": "a spool segment in {dir} failed its checksum",
    "poison": "Postgres refused their content; they are kept in {dir}/poison.jsonl",
}


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
        self._last_problem = ""
        self.stats = collections.Counter[str]()
        self._thread = self._start_thread()
        _WRITERS.add(self)
        if hasattr(os, "register_at_fork"):
            weak_after_fork = weakref.WeakMethod(self._after_fork)

            def after_fork() -> None:
                method = weak_after_fork()
                if method is not None:
                    method()

            os.register_at_fork(after_in_child=after_fork)

    # -- the exporters' side: never blocks on I/O ---------------------------------------------------------------

    def submit(self, kind: str, records: Sequence[Any]) -> None:
        overflow: list[tuple[str, Any]] = []
        with self._condition:
            room = self.options.queue_size - len(self._queue)
            accepted = records if room >= len(records) else records[: max(room, 0)]
            self._queue.extend((kind, record) for record in accepted)
            if len(accepted) < len(records):
                overflow = [(kind, record) for record in records[len(accepted) :]]
            if len(self._queue) >= self.options.batch_size:
                self._condition.notify()
            self.stats["queued"] += len(records)
        if overflow:  # the writer cannot keep up even with the spool: spill directly, still losing nothing
            self._spill(overflow)

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
        """Write what is buffered within the shutdown timeout; spool whatever Postgres could not take."""
        if self._stopping:
            return
        deadline = time.monotonic() + self.options.shutdown_timeout
        flushed = self.force_flush(self.options.shutdown_timeout)
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self._thread.join(max(0.5, deadline - time.monotonic()))
        leftovers = self._drain_queue()
        if leftovers or not flushed:
            self._spill(leftovers)
        if self._spool is not None:
            self._spool.close()
        self._close_connection()

    # -- the writer thread ---------------------------------------------------------------------------------------

    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="otel-rag-postgres-writer", daemon=True)
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
        self._thread = self._start_thread()

    def _run(self) -> None:
        while True:
            with self._condition:
                if not self._stopping and len(self._queue) < self.options.batch_size and not self._flush_pending():
                    self._condition.wait(self.options.flush_interval)
                if self._stopping:
                    return
                ticket = self._flush_requested
            try:
                self._cycle()
            except Exception:  # never let the thread die: log, back off, go on
                _logger.exception("postgres writer cycle failed")
                time.sleep(1.0)
            if ticket > self._flushed and self._backoff > 0:
                self._spill(self._drain_queue())  # Postgres is away: a flush means "durable", so spool it all
            with self._condition:
                if ticket > self._flushed and not self._queue:
                    self._flushed = ticket
                    self._condition.notify_all()

    def _flush_pending(self) -> bool:
        return self._flush_requested > self._flushed

    def _cycle(self) -> None:
        """One pass: replay the spool (oldest first), then write queued batches while Postgres takes them."""
        if self._backoff > 0:  # wait, unless asked to flush or stop (then try once more right away)
            with self._condition:
                self._condition.wait_for(lambda: self._stopping or self._flush_pending(), timeout=self._backoff)
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

    def _take(self, count: int) -> list[tuple[str, Any]]:
        with self._condition:
            return [self._queue.popleft() for _ in range(min(count, len(self._queue)))]

    def _drain_queue(self) -> list[tuple[str, Any]]:
        with self._condition:
            items = list(self._queue)
            self._queue.clear()
        return items

    def _relieve_memory(self) -> None:
        """While Postgres is away, keep the queue under half its size by moving the oldest records to disk."""
        high_water = self.options.queue_size // 2
        while len(self._queue) > high_water:
            self._spill(self._take(min(self.options.batch_size, len(self._queue) - high_water)))

    def _row(self, kind: str, value: Any) -> tuple[Any, ...]:
        """The table row of a queued item: an OTel record is converted; a row (from the spool) is itself."""
        if isinstance(value, tuple):
            return value
        if kind == "log":
            return log_row(value, self.options.limits)
        span = redact_span(value, self.redactor) if self.redactor is not None else value
        return span_row(span, self.options.limits)

    def _to_rows(self, batch: Iterable[tuple[str, Any]]) -> list[Item]:
        return [(kind, self._row(kind, value)) for kind, value in batch]

    # -- spool -----------------------------------------------------------------------------------------------------

    def spool(self) -> Spool:
        if self._spool is None:
            self._spool = Spool(self.options.spool_dir, self.options.spool_max_bytes, self.options.spool_fsync)
        return self._spool

    def _spill(self, batch: list[tuple[str, Any]]) -> None:
        if batch:
            self._spill_items(self._to_rows(batch))

    def _spill_items(self, items: list[Item]) -> None:
        if not items:
            return
        try:
            written, refused = self.spool().append(items)
        except OSError:
            _logger.exception("cannot write to the spool at %s", self.options.spool_dir)
            written, refused = 0, len(items)
        self.stats["spooled"] += written
        metrics.sink_spooled.add(written)
        if refused:
            self._dropped(refused, "spool_full")

    def _dropped(self, count: int, reason: str) -> None:
        self.stats["dropped"] += count
        metrics.sink_dropped.add(count, {"reason": reason})
        if not self._warned_drop:
            self._warned_drop = True
            why = _DROP_REASONS[reason].format(dir=self.options.spool_dir, limit=self.options.spool_max_bytes)
            _logger.warning(
                "otel-rag dropped %d records: %s; further drops are counted in otel_rag.sink.dropped", count, why
            )

    def _replay_spool(self) -> bool:
        """Write spooled segments, oldest first; False while Postgres is unavailable."""
        if self._spool is None and not any(self.options.spool_dir.glob("*/*.seg")):
            return True
        spool = self.spool()
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

    def _write_items(self, items: list[tuple[str, Any]]) -> bool:
        """COPY the items; True when they are stored (or isolated as poison), False when Postgres is away.

        Records are converted to rows while the COPY streams, so the server indexes one part of the batch while
        this thread converts the next; converted rows replace the records in `items`, ready for a retry.
        """
        if not items:
            return True
        started = time.perf_counter()
        try:
            connection = self._connect()
            self._ensure_partitions(connection, items)
            try:
                self._copy(connection, items, staged=False)
            except psycopg.errors.UniqueViolation:
                self.stats["deduplicated_batches"] += 1
                self._copy(connection, items, staged=True)
        except _CONTENT_ERRORS as error:
            self._isolate_poison(items, error)
            return True
        except psycopg.Error as error:
            self._unavailable(error)
            return False
        self._backoff = 0.0
        self._record_success(items, time.perf_counter() - started)
        return True

    def _unavailable(self, error: psycopg.Error) -> None:
        self._close_connection()
        self._backoff = min(max(self._backoff * 2, 0.25), 10.0) * random.uniform(0.8, 1.2)  # noqa: S311
        self.stats["retried"] += 1
        metrics.sink_retried.add(1)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, _CONNECTION_ERRORS):
            _logger.debug("postgres unavailable (%s); retrying in %.2fs", reason, self._backoff)
        elif reason != self._last_problem:  # misconfiguration: say it once per distinct problem, keep retrying
            _logger.error("postgres sink cannot write (%s): records are kept and retried", reason)
        self._last_problem = reason

    def _record_success(self, items: list[tuple[str, Any]], seconds: float) -> None:
        logs = sum(1 for kind, _ in items if kind == "log")
        self.stats["exported"] += len(items)
        metrics.sink_batch_duration.record(seconds)
        if logs:
            metrics.sink_exported.add(logs, {"signal": "logs"})
        if len(items) - logs:
            metrics.sink_exported.add(len(items) - logs, {"signal": "traces"})

    def _ensure_partitions(self, connection: psycopg.Connection[Any], items: list[tuple[str, Any]]) -> None:
        days = {_day(value) for _, value in items} - self._partitions
        if days:
            ensure_partitions(connection, self.options.schema, min(days), max(days))
            self._partitions |= set(_days_between(min(days), max(days)))

    def _copy(self, connection: psycopg.Connection[Any], items: list[tuple[str, Any]], staged: bool) -> None:
        schema = sql.Identifier(self.options.schema)
        with connection.transaction(), connection.cursor() as cursor:
            for kind, (table, columns) in _TABLES.items():
                positions = [index for index, (item_kind, _) in enumerate(items) if item_kind == kind]
                if not positions:
                    continue
                column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
                target = sql.SQL("{}.{}").format(schema, sql.Identifier(table))
                if staged:  # the writer may not SELECT the table, so the stage is declared, not LIKE'd
                    stage = sql.Identifier(f"otel_rag_stage_{table}")
                    cursor.execute(
                        sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                            stage,
                            sql.SQL(", ").join(
                                sql.SQL(f"{{}} {_STAGE_TYPES[c]}").format(sql.Identifier(c)) for c in columns
                            ),
                        )
                    )
                    copy_into: sql.Composable = stage
                else:
                    copy_into = target
                with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(copy_into, column_list)) as copy:
                    for index in positions:
                        row = self._row(kind, items[index][1])
                        items[index] = (kind, row)
                        copy.write_row(row)
                if staged:
                    cursor.execute(
                        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
                            target, column_list, column_list, copy_into
                        )
                    )

    def _isolate_poison(self, items: list[tuple[str, Any]], error: psycopg.Error) -> None:
        """Split the batch until the rows Postgres refuses are alone; write the others, quarantine those."""
        if len(items) == 1:
            reason = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            self.spool().quarantine(self._to_rows(items), reason)
            self._dropped(1, "poison")
            _logger.warning("a record was refused by Postgres and quarantined: %s", str(error).splitlines()[0])
            return
        middle = len(items) // 2
        for half in (items[:middle], items[middle:]):
            if not self._write_items(half):
                self._spill(half)


def _day(value: Any) -> dt.date:
    """The UTC day (partition) of a queued record or row."""
    if isinstance(value, tuple):
        return dt.date.fromisoformat(value[0][:10])
    log = getattr(value, "log_record", None)
    nanoseconds = (log.timestamp or log.observed_timestamp) if log is not None else value.start_time
    return dt.datetime.fromtimestamp((nanoseconds or 0) / 1e9, dt.UTC).date()


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


metrics.register_sink_gauges(queued_records, spooled_bytes)
