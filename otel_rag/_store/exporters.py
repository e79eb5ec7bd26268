"""The `postgres` exporters: `OTEL_LOGS_EXPORTER=postgres` and `OTEL_TRACES_EXPORTER=postgres`.

Both honour the SDK's exporter contracts (`export`, `force_flush`, `shutdown`) and share one `PostgresWriter`
per process, configured from the settings the configurator passes (OTEL_RAG_POSTGRES_*, OTEL_RAG_SPOOL_*; read
from the environment only when an exporter is built without them). `export()` only queues: the
configurator pairs these exporters with the direct processors below, so records go straight from the emitting
thread into the writer's queue, without the SDK's batch queue in between (a second buffer, which drops when full).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_rag._config.settings import ConfigError, Settings, load_settings
from otel_rag._store.writer import PostgresWriter, WriterOptions, shared_writer
from otel_rag._telemetry.redaction import Redactor

__all__ = [
    "PostgresLogExporter",
    "PostgresLogProcessor",
    "PostgresSpanExporter",
    "PostgresSpanProcessor",
    "writer_options",
]


def writer_options(settings: Settings) -> WriterOptions:
    if not settings.postgres_dsn:
        raise ConfigError("OTEL_RAG_POSTGRES_DSN", "", "a postgresql:// URL (the postgres exporter needs it)")
    return WriterOptions(
        dsn=settings.postgres_dsn,
        schema=settings.postgres_schema,
        batch_size=settings.postgres_batch_size,
        flush_interval=settings.postgres_flush_interval_ms / 1000,
        queue_size=settings.postgres_queue_size,
        spool_dir=Path(settings.spool_dir) / _spool_subdir(settings),
        spool_max_bytes=settings.spool_max_bytes,
        spool_fsync=settings.spool_fsync,
        shutdown_timeout=settings.postgres_shutdown_timeout_ms / 1000,
    )


def _spool_subdir(settings: Settings) -> str:
    """One spool per service and schema, so two services on one host never replay each other's records."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in settings.service_name)
    return f"{safe}.{settings.postgres_schema}"


def _writer(writer: PostgresWriter | None, settings: Settings | None, redactor: Redactor | None) -> PostgresWriter:
    if writer is not None:
        return writer
    settings = settings or load_settings()
    redactor = redactor or Redactor(settings.redact_keys, settings.redact_patterns)
    return shared_writer(writer_options(settings), redactor)


class _WriterBacked:
    """What both exporters share: the process's shared writer behind them, its flush and its shutdown."""

    def __init__(
        self,
        writer: PostgresWriter | None = None,
        settings: Settings | None = None,
        redactor: Redactor | None = None,
        **_: Any,
    ) -> None:
        self.writer = _writer(writer, settings, redactor)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.writer.force_flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        self.writer.shutdown()


class PostgresLogExporter(_WriterBacked, LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.writer.submit("log", batch)
        return LogRecordExportResult.SUCCESS


class PostgresSpanExporter(_WriterBacked, SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.writer.submit("span", spans)
        return SpanExportResult.SUCCESS


class PostgresSpanProcessor(SpanProcessor):
    """Hands each sampled span to the exporter as it ends; flush and shutdown reach the writer."""

    def __init__(self, exporter: PostgresSpanExporter) -> None:
        self.exporter = exporter

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self.exporter.export((span,))

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.exporter.shutdown()


class PostgresLogProcessor(LogRecordProcessor):
    """Hands each log record to the exporter as it is emitted; flush and shutdown reach the writer."""

    def __init__(self, exporter: PostgresLogExporter) -> None:
        self.exporter = exporter

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.exporter.export((log_record,))  # type: ignore[arg-type]  # same fields, read-only from here on

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.exporter.shutdown()
