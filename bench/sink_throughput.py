"""Sustained records/s from one process into Postgres through the otel-rag sink vs a raw psycopg COPY of the same
rows (the ceiling), same run, same server; and the emitting thread's cost per event with and without the sink.

Sink: OTel log records (created beforehand by the SDK, as the structlog bridge creates them) handed one by one to
the sink's processor -> exporter -> queue -> writer thread -> row conversion -> COPY, timed from the first hand-off
until force_flush returns. Ceiling: the same rows, already converted, COPYed in batches of the same size over one
connection. Emitting cost: `logger.emit()` per event in bursts of 1000 (the writer flushing between bursts), with
the sink's processor vs an in-memory list processor. The SDK's own record creation is in both emit figures.
Goal (issue 3): sink >= 0.7x the ceiling; per-event emit cost with the sink close to the cost without it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.util.types import AnyValue

from bench import _pg
from bench._verdict import Goal, report
from otel_rag._store.exporters import PostgresLogExporter, PostgresLogProcessor
from otel_rag._store.rows import LOG_COLUMNS, Limits, log_row
from otel_rag._store.writer import PostgresWriter, WriterOptions

RESOURCE = Resource.create({"service.name": "bench", "service.version": "1.0", "deployment.environment": "bench"})
ATTRIBUTES: dict[str, AnyValue] = {
    "enduser.id": "user-7",
    "doc_id": "doc-42",
    "chunk_index": 3,
    "rag.stage": "chunk",
    "tokens": 120,
}


class _Capture(LogRecordProcessor):
    """Keeps the emitted records (to build the ceiling's rows) at no I/O cost."""

    def __init__(self) -> None:
        self.records: list[ReadWriteLogRecord] = []

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.records.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _emit(provider: LoggerProvider, count: int) -> float:
    logger = provider.get_logger("bench")
    started = time.perf_counter()
    for index in range(count):
        logger.emit(body="chunk.created", attributes={**ATTRIBUTES, "seq": index})
    return time.perf_counter() - started


def _truncate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("TRUNCATE otel_rag.logs")


def _records(count: int) -> list[ReadWriteLogRecord]:
    capture = _Capture()
    provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_log_record_processor(capture)
    _emit(provider, count)
    return capture.records


def _writer(dsn: str, batch: int, queue: int) -> PostgresWriter:
    options = WriterOptions(dsn=dsn, batch_size=batch, queue_size=queue, spool_dir=Path(tempfile.mkdtemp()))
    return PostgresWriter(options)


def run_sink(dsn: str, records: list[ReadWriteLogRecord], batch: int) -> float:
    """Records/s from hand-off to stored."""
    writer = _writer(dsn, batch, len(records) + 1)
    processor = PostgresLogProcessor(PostgresLogExporter(writer))
    started = time.perf_counter()
    for record in records:
        processor.on_emit(record)
    assert writer.force_flush(300), "flush timed out"
    elapsed = time.perf_counter() - started
    writer.shutdown()
    with psycopg.connect(dsn) as connection:
        stored = connection.execute("SELECT count(*) FROM otel_rag.logs").fetchone()
    assert stored == (len(records),), stored
    return len(records) / elapsed


def emit_cost(dsn: str | None, bursts: int = 20, burst: int = 1000) -> float:
    """Microseconds per logger.emit() in the emitting thread, with the sink (dsn) or an in-memory processor."""
    provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    writer = _writer(dsn, 2000, 1_000_000) if dsn else None
    provider.add_log_record_processor(PostgresLogProcessor(PostgresLogExporter(writer)) if writer else _Capture())
    samples = []
    for _ in range(bursts):
        samples.append(_emit(provider, burst) / burst * 1e6)
        if writer is not None:
            writer.force_flush(30)
    if writer is not None:
        writer.shutdown()
    return statistics.median(samples)


def run_ceiling(dsn: str, records: list[ReadWriteLogRecord], batch: int) -> float:
    rows = [log_row(record, Limits()) for record in records]  # type: ignore[arg-type]
    columns = ", ".join(LOG_COLUMNS)
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as connection:
        for start in range(0, len(rows), batch):
            statement = f"COPY otel_rag.logs ({columns}) FROM STDIN".encode()
            with connection.transaction(), connection.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows[start : start + batch]:
                    copy.write_row(row)
    return len(rows) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> list[Goal]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    server = _pg.start()
    try:
        dsn = server.dsn()
        records = _records(args.records)
        ours, ceiling, emit_ours, emit_bare = [], [], [], []
        for round_number in range(args.rounds):
            _truncate(dsn)
            ours.append(run_sink(dsn, records, args.batch))
            _truncate(dsn)
            ceiling.append(run_ceiling(dsn, records, args.batch))
            _truncate(dsn)
            emit_ours.append(emit_cost(dsn))
            emit_bare.append(emit_cost(None))
            print(f"round {round_number + 1}: sink {ours[-1]:,.0f} rows/s, raw COPY {ceiling[-1]:,.0f} rows/s")
        sink, raw = statistics.median(ours), statistics.median(ceiling)
        print(f"\n{args.records:,} log records a round, batches of {args.batch}, {server.version()}, 3 b-tree + 1 BRIN")
        print(f"  otel-rag sink (hand-off -> stored) {sink:8,.0f} rows/s   {sink / raw:4.2f}x the ceiling")
        print(f"  raw psycopg COPY (ceiling)         {raw:8,.0f} rows/s")
        print(
            f"  emitting thread per event: with sink {statistics.median(emit_ours):.1f} us, "
            f"without (in-memory processor) {statistics.median(emit_bare):.1f} us"
        )
        return report([Goal("sink_throughput vs raw COPY", sink / raw, 0.70)])
    finally:
        server.remove()


if __name__ == "__main__":
    main()
