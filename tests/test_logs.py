"""The log pipeline in-process: one schema for structlog and stdlib, trace context, redaction, the OTel bridge."""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry._logs import SeverityNumber

from otel_rag import get_logger, set_user, trace_span
from otel_rag.config import load_settings
from otel_rag.logs import setup_logging

from .conftest import Sdk


@pytest.fixture
def lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]

    yield read
    structlog.reset_defaults()


def _setup(sdk: Sdk | None, **env: str) -> None:
    settings = load_settings({"OTEL_SERVICE_NAME": "svc", **env})
    setup_logging(settings, provider=sdk.logger_provider if sdk else None)


def test_structlog_and_stdlib_share_one_schema(sdk: Sdk, lines: Any) -> None:
    _setup(sdk)
    log = get_logger()
    with trace_span("op") as span:
        set_user("alice")
        log.info("doc.parsed", pages=3)
        logging.getLogger("some.library").warning("disk at %d%%", 91, extra={"disk": "/dev/sda"})
    log.info("outside")
    first, second, third = lines()
    trace_hex = format(span.get_span_context().trace_id, "032x")
    assert first["logger"] == __name__
    assert first["event"] == "doc.parsed" and first["pages"] == 3 and first["level"] == "info"
    assert second["logger"] == "some.library" and second["event"] == "disk at 91%"
    assert second["disk"] == "/dev/sda" and second["level"] == "warning"
    for line in (first, second):
        assert line["trace_id"] == trace_hex
        assert line["span_id"] == format(span.get_span_context().span_id, "016x")
        assert line["user_id"] == "alice"
        assert line["service"] == "svc"
        assert list(line)[:7] == ["timestamp", "level", "logger", "event", "service", "trace_id", "span_id"]
    assert third["trace_id"] is None and third["span_id"] is None


def test_levels_filter_both_sources(sdk: Sdk, lines: Any) -> None:
    _setup(sdk, OTEL_RAG_LOG_LEVEL="error")
    get_logger("x").warning("dropped")
    logging.getLogger("y").warning("dropped too")
    get_logger("x").error("kept")
    assert [line["event"] for line in lines()] == ["kept"]


def test_exceptions_are_rendered_once_with_type(sdk: Sdk, lines: Any) -> None:
    _setup(sdk)
    try:
        raise KeyError("missing")
    except KeyError:
        get_logger("x").exception("lookup.failed")
        logging.getLogger("y").exception("lookup failed")
    structlog_line, stdlib_line = lines()
    for line in (structlog_line, stdlib_line):
        assert line["level"] == "error"
        assert line["exception_type"] == "KeyError"
        assert "Traceback" in line["exception"] and "KeyError: 'missing'" in line["exception"]


def test_secrets_are_redacted_in_keys_and_values(sdk: Sdk, lines: Any) -> None:
    _setup(sdk, OTEL_RAG_REDACT_PATTERNS=r"[\w.+-]+@[\w-]+\.[\w.]+", OTEL_RAG_REDACT_KEYS="ssn")
    get_logger("x").info(
        "connecting postgresql://app:hunter2@db/rag",
        password="hunter2",
        ssn="123-45-6789",
        header="Bearer abcdefghijklmnop",
        contact="mail bob@example.com now",
        input_tokens=12,
    )
    (line,) = lines()
    assert "hunter2" not in json.dumps(line)
    assert line["password"] == "[REDACTED]" and line["ssn"] == "[REDACTED]"
    assert line["event"] == "connecting postgresql://app:[REDACTED]@db/rag"
    assert line["header"] == "Bearer [REDACTED]"
    assert line["contact"] == "mail [REDACTED] now"
    assert line["input_tokens"] == 12


def test_records_are_bridged_into_the_logger_provider_with_trace_context(sdk: Sdk, lines: Any) -> None:
    _setup(sdk)
    with trace_span("op") as span:
        set_user("bob")
        get_logger("rag.stage").info("chunk.created", chunk_index=4, token="secret-value", meta={"a": 1})
        logging.getLogger("lib").error("stdlib error")
    records = [data.log_record for data in sdk.logs.get_finished_logs()]
    assert [r.body for r in records] == ["chunk.created", "stdlib error"]
    chunk, error = records
    assert chunk.trace_id == span.get_span_context().trace_id
    assert chunk.span_id == span.get_span_context().span_id
    assert chunk.severity_number is SeverityNumber.INFO and error.severity_number is SeverityNumber.ERROR
    assert chunk.attributes["chunk_index"] == 4
    assert chunk.attributes["token"] == "[REDACTED]"  # redacted before the bridge
    assert chunk.attributes["enduser.id"] == "bob"
    assert chunk.attributes["meta"] == "{'a': 1}"
    assert len(lines()) == 2


def test_no_bridge_without_a_log_exporter(sdk: Sdk, lines: Any) -> None:
    _setup(None)
    get_logger("x").info("only stdout")
    assert sdk.logs.get_finished_logs() == ()
    assert len(lines()) == 1


def test_console_handlers_installed_later_are_replaced(sdk: Sdk, lines: Any) -> None:
    _setup(sdk)
    import sys

    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
            "loggers": {"thirdparty": {"handlers": ["console"], "level": "INFO", "propagate": False}},
        }
    )
    logging.getLogger("thirdparty").info("plain text would break the JSON stream")
    (line,) = lines()
    assert line["logger"] == "thirdparty"
    assert sys.stdout  # the handler wrote through the current stdout


def test_console_format_is_readable(sdk: Sdk, capsys: pytest.CaptureFixture[str]) -> None:
    _setup(sdk, OTEL_RAG_LOG_FORMAT="console")
    get_logger("x").info("human.readable", k="v")
    out = capsys.readouterr().out
    structlog.reset_defaults()
    assert "human.readable" in out and "k=v" in out
    assert not out.startswith("{")
