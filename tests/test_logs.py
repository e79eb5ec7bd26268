"""The log pipeline in-process: one schema for structlog and stdlib, trace context, redaction, the OTel bridge."""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry._logs import SeverityNumber

import otel_rag
from otel_rag import get_logger, set_user, trace_span
from otel_rag._config.settings import load_settings
from otel_rag._telemetry.logs import setup_logging
from otel_rag.testing import CapturedTelemetry


@pytest.fixture
def lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]

    yield read
    structlog.reset_defaults()


def _setup(sdk: CapturedTelemetry | None, **env: str) -> None:
    settings = load_settings({"OTEL_SERVICE_NAME": "svc", **env})
    setup_logging(settings, provider=sdk.logger_provider if sdk else None)


def test_structlog_and_stdlib_share_one_schema(sdk: CapturedTelemetry, lines: Any) -> None:
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


def test_levels_filter_both_sources(sdk: CapturedTelemetry, lines: Any) -> None:
    _setup(sdk, OTEL_RAG_LOG_LEVEL="error")
    get_logger("x").warning("dropped")
    logging.getLogger("y").warning("dropped too")
    get_logger("x").error("kept")
    assert [line["event"] for line in lines()] == ["kept"]


def test_exceptions_are_rendered_once_with_type(sdk: CapturedTelemetry, lines: Any) -> None:
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


def test_the_servers_line_about_a_failed_request_joins_its_trace(sdk: CapturedTelemetry, lines: Any) -> None:
    """uvicorn logs "Exception in ASGI application" after the request's span has ended and its context is gone: the
    JSON line and the OTel record (what the Postgres sink stores) still carry the request's trace, span and user."""
    _setup(sdk)
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        set_user("dora")
        raise RuntimeError("model overloaded")

    otel_rag.instrument_app(app)
    with pytest.raises(RuntimeError) as raised, TestClient(app) as client:
        client.get("/boom")
    lines()  # the request's own lines
    logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=raised.value)
    (span,) = sdk.finished()
    (line,) = [x for x in lines() if x["logger"] == "uvicorn.error"]
    assert line["trace_id"] == format(span.context.trace_id, "032x") and line["user_id"] == "dora"
    assert line["span_id"] == format(span.context.span_id, "016x")
    (record,) = [r.log_record for r in sdk.log_records() if r.log_record.body == "Exception in ASGI application\n"]
    assert (record.trace_id, record.span_id) == (span.context.trace_id, span.context.span_id)
    assert record.attributes is not None and record.attributes["enduser.id"] == "dora"
    logging.getLogger("later").error("no request")
    (unrelated,) = [r.log_record for r in sdk.log_records() if r.log_record.body == "no request"]
    assert unrelated.trace_id in (None, 0)


def test_secrets_are_redacted_in_keys_and_values(sdk: CapturedTelemetry, lines: Any) -> None:
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


def test_a_line_seen_clean_is_passed_by_lookups_and_a_secret_among_its_fields_is_still_caught(
    sdk: CapturedTelemetry, lines: Any
) -> None:
    """The redactor's fast path (issue 16) for a line whose fields were all seen clean before."""
    _setup(sdk)
    log = get_logger("x")
    for _ in range(2):
        log.info("stage.done", note="visible", count=3)
    log.info("stage.done", note="token=abcdefgh12345678", count=3)  # a new text under a known key
    log.info("stage.done", password="visible", count=3)  # a secret key holding a text seen clean
    log.info("stage.done", password="visible", count=3)  # and again, the key now known to be secret
    log.info("stage.done", note=["visible"], count=3)  # a list: scanned, not looked up
    log.info("stage.done", note={"api_key": "visible"})
    found = lines()
    assert [line["note"] for line in found[:2]] == ["visible", "visible"]
    assert found[2]["note"] == "token=[REDACTED]"
    assert found[3]["password"] == found[4]["password"] == "[REDACTED]"
    assert found[5]["note"] == ["visible"] and found[6]["note"] == {"api_key": "[REDACTED]"}


def test_records_are_bridged_into_the_logger_provider_with_trace_context(sdk: CapturedTelemetry, lines: Any) -> None:
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
    attributes = dict(chunk.attributes or {})
    assert attributes["chunk_index"] == 4
    assert attributes["token"] == "[REDACTED]"  # redacted before the bridge
    assert attributes["enduser.id"] == "bob"
    assert attributes["meta"] == "{'a': 1}"
    assert len(lines()) == 2


def test_no_bridge_without_a_log_exporter(sdk: CapturedTelemetry, lines: Any) -> None:
    _setup(None)
    get_logger("x").info("only stdout")
    assert sdk.logs.get_finished_logs() == ()
    assert len(lines()) == 1


def test_console_handlers_installed_later_are_replaced(sdk: CapturedTelemetry, lines: Any) -> None:
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


def test_console_format_is_readable(sdk: CapturedTelemetry, capsys: pytest.CaptureFixture[str]) -> None:
    _setup(sdk, OTEL_RAG_LOG_FORMAT="console")
    get_logger("x").info("human.readable", k="v")
    out = capsys.readouterr().out
    structlog.reset_defaults()
    assert "human.readable" in out and "k=v" in out
    assert not out.startswith("{")


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


def _deep(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels):
        node["next"] = {}
        node = node["next"]
    return root


def _circular() -> dict[str, Any]:
    data: dict[str, Any] = {"name": "loop", "items": []}
    data["self"] = data
    data["items"].append(data)
    return data


HOSTILE: dict[str, Any] = {
    "deep": _deep(300),
    "circular": _circular(),
    "unprintable": _Unprintable(),
    "surrogate": "half a pair \udc80 here",
    "huge_int": 2**80,
    "odd_keys": {(1, 2): "tuple key", None: "none key", _Unprintable(): "bad key"},
    "nul": "a\x00b",
    "bytes": b"\xff\xfe raw",
    "set": {1, 2},
    "nan": float("nan"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_values_never_raise_and_the_line_is_written(sdk: CapturedTelemetry, lines: Any, name: str) -> None:
    _setup(sdk)
    get_logger("x").info("hostile", value=HOSTILE[name], marker=name)  # must not raise
    logging.getLogger("y").warning("stdlib %s", "hostile", extra={"value": HOSTILE[name]})
    structlog_line, stdlib_line = lines()
    assert structlog_line["event"] == "hostile" and structlog_line["marker"] == name
    assert stdlib_line["event"] == "stdlib hostile" and "value" in stdlib_line
    if name == "deep":
        assert "[nested too deep]" in json.dumps(structlog_line)
    if name == "circular":
        assert "[circular reference]" in json.dumps(structlog_line)
    if name == "unprintable":
        assert structlog_line["value"] == "<unprintable _Unprintable>"


def test_a_log_call_that_cannot_be_formatted_writes_a_line_instead_of_raising(
    sdk: CapturedTelemetry, lines: Any
) -> None:
    from otel_rag._telemetry.logs import JsonLogHandler

    _setup(sdk)
    log = get_logger("x")
    log.info("two placeholders %s %s", "only one")  # noqa: PLE1206 - structlog's %-interpolation fails
    root = logging.getLogger()
    others = [handler for handler in root.handlers if not isinstance(handler, JsonLogHandler)]
    for handler in others:  # pytest's own capture handler would raise on this record before ours runs
        root.removeHandler(handler)
    try:
        logging.getLogger("y").error("%d items", "not a number")  # the stdlib's fails too
    finally:
        for handler in others:
            root.addHandler(handler)
    log.info(_Unprintable())  # type: ignore[arg-type]  # an event that cannot be turned into text
    first, second, third = lines()
    assert first["event"] == "two placeholders %s %s" and "otel_rag.log_error" in first
    assert second["event"].startswith("%d items") and second["level"] == "error"
    assert third["event"] == "<unprintable _Unprintable>"


def test_hostile_log_values_in_a_request_never_become_a_500(sdk: CapturedTelemetry, lines: Any) -> None:
    import asyncio

    import httpx
    from fastapi import FastAPI

    import otel_rag

    _setup(sdk)
    app = FastAPI()

    @app.get("/hostile")
    async def hostile() -> dict[str, str]:
        log = get_logger("app")
        for name, value in HOSTILE.items():
            log.info("request.data", field=name, value=value)
        return {"ok": "yes"}

    otel_rag.instrument_app(app)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.get("/hostile")

    assert asyncio.run(call()).status_code == 200
    assert len([line for line in lines() if line["event"] == "request.data"]) == len(HOSTILE)


def test_user_ids_get_the_same_pii_treatment_in_logs_and_spans(sdk: CapturedTelemetry, lines: Any) -> None:
    email = r"[\w.+-]+@[\w-]+\.[\w.]+"
    _setup(sdk, OTEL_RAG_REDACT_PATTERNS=email)
    from otel_rag._telemetry.redaction import Redactor, redact_span

    with trace_span("op"):
        set_user("bob@example.com")
        get_logger("x").info("signed.in")
    (line,) = lines()
    assert line["user_id"] == "[REDACTED]"
    span = redact_span(sdk.finished()[-1], Redactor(extra_patterns=[__import__("re").compile(email)]))
    assert dict(span.attributes or {})["enduser.id"] == "[REDACTED]"
    set_user(None)  # set outside a request, the user stays with this context: not for the tests after this one


def test_log_correlation_fields_are_on_records_but_not_repeated_in_the_line(sdk: CapturedTelemetry, lines: Any) -> None:
    """OTEL_PYTHON_LOG_CORRELATION=true: the stock fields for other handlers; our line keeps trace_id/span_id."""
    from otel_rag._telemetry import log_correlation

    _setup(sdk)
    seen: list[logging.LogRecord] = []

    class Collector(logging.Handler):  # a user's own handler: it reads the fields the factory sets
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    collector = Collector()
    logger = logging.getLogger("correlated")
    logger.addHandler(collector)
    factory = logging.getLogRecordFactory()
    try:
        log_correlation.install_record_trace_fields()
        log_correlation.install_record_trace_fields()  # once per process: a second call changes nothing
        logger.warning("outside")
        with trace_span("op") as span:
            logger.warning("inside")
    finally:
        logging.setLogRecordFactory(factory)
        log_correlation._installed = False
        logger.removeHandler(collector)
    outside, inside = seen
    assert (outside.otelTraceID, outside.otelSpanID, outside.otelTraceSampled) == ("0", "0", False)  # type: ignore[attr-defined]
    context = span.get_span_context()
    assert inside.otelTraceID == format(context.trace_id, "032x")  # type: ignore[attr-defined]
    assert inside.otelSpanID == format(context.span_id, "016x")  # type: ignore[attr-defined]
    assert inside.otelTraceSampled is True and inside.otelServiceName == "unit-tests"  # type: ignore[attr-defined]
    written = lines()
    assert [line["event"] for line in written] == ["outside", "inside"]
    assert not any(key.startswith("otel") for line in written for key in line)
    assert written[1]["trace_id"] == format(context.trace_id, "032x")


def test_a_line_on_a_trace_without_a_span_keeps_the_trace_id(sdk: CapturedTelemetry, lines: Any) -> None:
    """An evaluation recorded later on a past trace whose span is unknown: the trace id, no span id."""
    from opentelemetry import context, trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext

    _setup(sdk)
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(SpanContext(0xABC, 0, is_remote=True))))
    try:
        get_logger("judge").info("judged", event_name="gen_ai.evaluation.result")
    finally:
        context.detach(token)
    (line,) = lines()
    assert (line["trace_id"], line["span_id"]) == (format(0xABC, "032x"), None)
    (record,) = [r.log_record for r in sdk.log_records() if r.log_record.event_name == "gen_ai.evaluation.result"]
    assert (record.trace_id, record.span_id, record.body) == (0xABC, 0, None)
    assert "event_name" not in (record.attributes or {})
