"""A small, known story in a fresh store: one upload trace by bob (four stages, a failing generate, logs, tokens and
cost) and one failing health check by carol; shared by the query, CLI and debug API tests."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_rag._store.exporters import (
    PostgresLogExporter,
    PostgresLogProcessor,
    PostgresSpanExporter,
    PostgresSpanProcessor,
)
from otel_rag._store.writer import PostgresWriter, WriterOptions
from tests.support.postgres import Database, scratch_dir

LANGSMITH_URL = "https://smith.langchain.com/o/demo/projects/p/default/r/0190-run"  # as the mirror sets it


class Seeded:
    def __init__(self, store: Database) -> None:
        self.store = store
        self.reader = store.dsn("rag_reader")
        writer = PostgresWriter(WriterOptions(dsn=store.dsn("rag_writer"), spool_dir=scratch_dir("spool-")))
        resource = Resource.create({"service.name": "rag-api"})
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(PostgresSpanProcessor(PostgresSpanExporter(writer)))
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(PostgresLogProcessor(PostgresLogExporter(writer)))
        tracer = tracer_provider.get_tracer("seed")
        logger = logger_provider.get_logger("rag")
        root_attributes = {"enduser.id": "bob", "rag.langsmith.url": LANGSMITH_URL}
        with tracer.start_as_current_span("POST /documents", attributes=root_attributes) as root:
            logger.emit(body="upload.received", attributes={"enduser.id": "bob", "bytes": 2048})
            for stage, sleep in (("parse", 0.004), ("chunk", 0.001), ("embed", 0.012)):
                attributes: dict[str, Any] = {"rag.stage": stage, "enduser.id": "bob"}
                if stage == "embed":
                    attributes |= {
                        "gen_ai.usage.input_tokens": 300,
                        "rag.cost_usd": 0.006,
                        "gen_ai.request.model": "text-embedding-3-small",
                    }
                with tracer.start_as_current_span(f"rag.{stage}", attributes=attributes):
                    time.sleep(sleep)
                    logger.emit(body=f"{stage}.done", attributes={"enduser.id": "bob"})
            with tracer.start_as_current_span(
                "rag.generate",
                attributes={
                    "rag.stage": "generate",
                    "enduser.id": "bob",
                    "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 200,
                    "rag.cost_usd": 0.0105,
                    "gen_ai.request.model": "gpt-4o-mini",
                },
            ) as generate:
                generate.set_status(Status(StatusCode.ERROR, "upstream timeout"))
                generate.set_attribute("error.type", "TimeoutError")
                logger.emit(
                    body="llm.failed boom 100%",
                    severity_number=SeverityNumber.ERROR,
                    severity_text="error",
                    attributes={"enduser.id": "bob", "exception.type": "TimeoutError"},  # as the log bridge names it
                )
        self.trace_id = format(root.get_span_context().trace_id, "032x")
        with tracer.start_as_current_span("GET /health", attributes={"enduser.id": "carol"}) as other:
            other.set_status(Status(StatusCode.ERROR, "carol's own error"))
        assert writer.force_flush(10)
        writer.shutdown()
