"""Structured logs: structlog and stdlib logging as one JSON schema on stdout, with trace context, and the same
records bridged into the OTel LoggerProvider.

The pipeline is a list of plain structlog processors `(logger, method, event_dict) -> event_dict`:

    merge_contextvars -> enrich (timestamp, level, logger, service, trace_id, span_id, user_id)
    -> format_exception -> redact -> bridge to OTel (when a log exporter is configured) -> render JSON/console

structlog loggers run it directly; stdlib records (uvicorn, gunicorn, any library) reach it through
`JsonLogHandler`, which replaces the console handlers those libraries install. Both write whole lines through one
`_StdoutLogger`, so the two sources never interleave inside a line.

Logging never raises into the application: redaction turns values JSON cannot hold (circular, too deep, objects
whose `__str__` raises) into placeholders, the renderer repairs what orjson refuses (lone surrogates, huge ints),
and if anything still fails (a bad `%` format, a broken processor) a short line saying so is written instead.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import logging.config
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from opentelemetry._logs import Logger as OTelLogger
from opentelemetry._logs import LoggerProvider, SeverityNumber
from opentelemetry.context import Context
from structlog.typing import EventDict, FilteringBoundLogger, Processor

from otel_rag._config.settings import Settings
from otel_rag._telemetry.log_correlation import RECORD_FIELDS
from otel_rag._telemetry.redaction import Redactor, safe_str
from otel_rag._telemetry.timestamps import UtcSeconds
from otel_rag._telemetry.tracing import ENDUSER_ID, FAILED_REQUEST_ATTR, attribute_value, request_user_box

__all__ = ["EVENT_NAME", "JsonLogHandler", "adopt_console_handlers", "get_logger", "setup_logging"]


_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "exception": "error",
    "critical": "critical",
    "fatal": "critical",
    "msg": "info",
    "log": "info",
}
_SEVERITY = {
    "debug": SeverityNumber.DEBUG,
    "info": SeverityNumber.INFO,
    "warning": SeverityNumber.WARN,
    "error": SeverityNumber.ERROR,
    "critical": SeverityNumber.FATAL,
}
# Keys of the line itself; everything else is the call's own key/values (and becomes an OTel attribute).
_LINE_KEYS = frozenset(("timestamp", "level", "logger", "event", "service", "trace_id", "span_id", "user_id"))
# A line with this key is an OTel event (a log record with an event name, e.g. gen_ai.evaluation.result).
EVENT_NAME = "event_name"
_CREATED = "_otel_rag_created"  # stdlib record time, carried from the handler to `enrich`


def get_logger(name: str | None = None, **initial_values: Any) -> FilteringBoundLogger:
    """A structlog logger bound to `name` (default: the calling module's name) and `initial_values`.

    Its methods (`info`, `warning`, `exception`, ...) never raise into the app: a value that cannot be rendered
    becomes a line that says so. Before `configure()` it is structlog's default logger.
    """
    if name is None:
        name = sys._getframe(1).f_globals.get("__name__", "app")
    logger: FilteringBoundLogger = structlog.get_logger().bind(logger=name, **initial_values)
    return logger


def _safe_bound_logger(min_level: int) -> type[Any]:
    """structlog's filtering bound logger whose log methods never raise: a failure writes a line saying so."""
    base = structlog.make_filtering_bound_logger(min_level)
    methods: dict[str, Any] = {}
    for name, method in vars(base).items():
        if not callable(method) or name.startswith("_") or method.__name__ in ("_nop", "_anop"):
            continue
        if name in ("bind", "unbind", "try_unbind", "new", "is_enabled_for", "get_effective_level"):
            continue
        methods[name] = _guard(name, method)
    return type("SafeBoundLogger", (base,), methods)


def _guard(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(method):

        async def guarded_async(self: Any, *args: Any, **kw: Any) -> Any:
            try:
                return await method(self, *args, **kw)
            except Exception as error:
                write_failure_line(name, args[:1], error)
                return None

        return guarded_async

    def guarded(self: Any, *args: Any, **kw: Any) -> Any:
        try:
            return method(self, *args, **kw)
        except Exception as error:
            write_failure_line(name, args[:1], error)
            return None

    return guarded


def write_failure_line(method_name: str, event: Sequence[Any], error: BaseException) -> None:
    """The last resort when a log call failed: a short JSON line with the event text and why. Never raises."""
    try:
        text = safe_str(event[0])[:1000] if event else ""
        line = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "level": _LEVELS.get(method_name, method_name),
            "event": _FAILURE_REDACTOR.scrub_text(text),
            "otel_rag.log_error": f"this log call failed and was written in short: {type(error).__name__}",
        }
        _STDOUT.msg(orjson.dumps(line, default=safe_str))
    except Exception:  # noqa: S110 - the last resort has no one left to tell
        pass


# -- processors ---------------------------------------------------------------------------------------------


def make_enricher(service: str) -> Processor:
    """Build the processor that gives every line the common schema, in a stable key order."""
    utc_seconds = UtcSeconds()
    get_span = trace.get_current_span
    # Lines logged under the same span reuse its hex ids: (span context, trace hex, span hex).
    last_ids: tuple[Any, str, str] = (None, "", "")

    def enrich(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        nonlocal last_ids
        created = event_dict.pop(_CREATED, None)
        epoch = created if created is not None else time.time()
        second = int(epoch)
        span_context = get_span().get_span_context()
        valid = span_context.is_valid
        box = request_user_box.get()
        if not valid:  # e.g. the server's "Exception in ASGI application", logged after the request ended
            failed = _failed_request(event_dict.get("exc_info"))
            if failed is not None:
                span_context, box = failed
                valid = True
        if not valid:  # a trace without a span (an evaluation recorded on a past trace) keeps its trace id
            trace_hex = format(span_context.trace_id, "032x") if span_context.trace_id else None
            span_hex = None
        elif (cached := last_ids)[0] is span_context:  # one read: another thread may swap it in between
            _, trace_hex, span_hex = cached
        else:
            trace_hex, span_hex = format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
            last_ids = (span_context, trace_hex, span_hex)
        line: dict[str, Any] = {
            "timestamp": f"{utc_seconds(second)}.{int((epoch - second) * 1_000_000):06d}Z",
            "level": _LEVELS.get(method_name, method_name),
            "logger": event_dict.pop("logger", None),
            "event": event_dict.pop("event", None),
            "service": service,
            "trace_id": trace_hex,
            "span_id": span_hex,
        }
        if box is not None and box.user_id is not None:
            line["user_id"] = box.user_id
        line.update(event_dict)
        return line

    return enrich


def _failed_request(exc_info: Any) -> Any:
    """The (span context, user box) the HTTP middleware left on an exception that escaped a request."""
    error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    return getattr(error, FAILED_REQUEST_ATTR, None) if isinstance(error, BaseException) else None


def format_exception(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """Turn `exc_info` into `exception` (the traceback text) and `exception_type`."""
    exc_info = event_dict.pop("exc_info", None)
    if not exc_info:
        return event_dict
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if exc_info[0] is not None:
        event_dict["exception_type"] = exc_info[0].__qualname__
        event_dict["exception"] = "".join(traceback.format_exception(*exc_info)).rstrip()
    return event_dict


# Line keys we fill in ourselves from trusted sources: never scrubbed (user_id is: it came from a request).
_OWN_KEYS = frozenset(("timestamp", "level", "logger", "service", "trace_id", "span_id"))


def make_redactor(redactor: Redactor) -> Processor:
    """Scrub every value but our own line keys; values JSON cannot hold become text or placeholders."""

    def redact(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        if redactor.seen_clean(event_dict, _OWN_KEYS, keys=False):  # a line's keys are names, not scrubbed
            return event_dict
        for key, value in event_dict.items():
            if key in _OWN_KEYS:
                continue
            new = redactor.scrub_value(key, value) if isinstance(key, str) else redactor.scrub(value)
            if new is not value:
                event_dict[key] = new
        return event_dict

    return redact


# The SDK's and our sink's own log lines: bridging them back into the pipeline that produced them could loop.
_NOT_BRIDGED = ("opentelemetry", "otel_rag.store")


class OTelBridge:
    """Emits each line into the OTel LoggerProvider with the current trace context.

    Records produced while exporting (the SDK logging about itself) are not bridged back, or a failing
    exporter would feed itself forever.
    """

    def __init__(self, provider: LoggerProvider) -> None:
        self._provider = provider
        self._loggers: dict[str, OTelLogger] = {}
        self._busy = threading.local()

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        name = event_dict.get("logger") or "app"
        if getattr(self._busy, "active", False) or name.startswith(_NOT_BRIDGED):
            return event_dict
        self._busy.active = True
        try:
            otel_logger = self._loggers.get(name)
            if otel_logger is None:
                otel_logger = self._loggers.setdefault(name, self._provider.get_logger(name))
            attributes = {
                key: attribute_value(value)
                for key, value in event_dict.items()
                if key not in _LINE_KEYS and value is not None
            }
            if "user_id" in event_dict:
                attributes[ENDUSER_ID] = event_dict["user_id"]
            if "exception" in event_dict:
                attributes["exception.stacktrace"] = attributes.pop("exception")
                attributes["exception.type"] = attributes.pop("exception_type", "")
            level = event_dict.get("level", "info")
            event_name = attributes.pop(EVENT_NAME, None)
            otel_logger.emit(
                context=_ended_request(event_dict),
                severity_number=_SEVERITY.get(level, SeverityNumber.INFO),
                severity_text=level.upper(),
                body=None if event_name else event_dict.get("event"),  # an event is its name and attributes
                attributes=attributes,
                event_name=str(event_name) if event_name else None,
            )
        finally:
            self._busy.active = False
        return event_dict


def _ended_request(event_dict: EventDict) -> Context | None:
    """The context of a request that ended before this line (the server's "Exception in ASGI application": the
    enricher found its span on the exception), so the record joins its trace; None: the current context. Only a line
    with an exception can be one, so every other line costs one dictionary lookup here."""
    trace_hex, span_hex = event_dict.get("trace_id"), event_dict.get("span_id")
    if "exception" not in event_dict or not (trace_hex and span_hex):
        return None
    if trace.get_current_span().get_span_context().is_valid:
        return None
    ended = trace.SpanContext(int(trace_hex, 16), int(span_hex, 16), False, trace.TraceFlags(trace.TraceFlags.SAMPLED))
    return trace.set_span_in_context(trace.NonRecordingSpan(ended))


def render_json(logger: Any, method_name: str, event_dict: EventDict) -> bytes:
    try:
        return orjson.dumps(event_dict, default=safe_str, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # lone surrogates, ints beyond 64 bits, odd keys: repair and write the line anyway
        return orjson.dumps(_json_safe(event_dict, 0), default=safe_str)


def _json_safe(value: Any, depth: int) -> Any:
    """What orjson can always write: valid UTF-8 strings, ints within 64 bits, string keys, bounded depth."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if value is None or isinstance(value, (bool, float, int)):
        return value if not isinstance(value, int) or -(2**63) <= value < 2**64 else str(value)
    if depth > 64:
        return "[nested too deep]"
    if isinstance(value, Mapping):
        return {_json_safe(safe_str(k), 0): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(item, depth + 1) for item in value]
    return _json_safe(safe_str(value), depth)


# -- output -------------------------------------------------------------------------------------------------


class _StdoutLogger:
    """Writes each rendered line to whatever `sys.stdout` is now, in one write, and flushes it."""

    def _write(self, line: bytes | str) -> None:
        stream = sys.stdout
        try:
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                buffer.write((line if isinstance(line, bytes) else line.encode("utf-8", "replace")) + b"\n")
                buffer.flush()
            else:
                stream.write((line.decode("utf-8", "replace") if isinstance(line, bytes) else line) + "\n")
                stream.flush()
        except (OSError, ValueError):  # stdout closed or gone (a broken pipe): the line is lost, the app is not
            pass

    msg = log = debug = info = warn = warning = error = critical = exception = fatal = failure = _write


_STDOUT = _StdoutLogger()
_FAILURE_REDACTOR = Redactor()


def _stdout_logger_factory(*args: Any) -> _StdoutLogger:
    return _STDOUT


# A record's own attributes, not fields of the line (the otel* ones repeat trace_id and span_id).
_RECORD_FIELDS = (
    frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"} | RECORD_FIELDS
)


class JsonLogHandler(logging.Handler):
    """A stdlib handler that sends records through the otel-rag processors, one line each."""

    def __init__(self, processors: list[Processor]) -> None:
        super().__init__()
        self._processors = processors

    def emit(self, record: logging.LogRecord) -> None:
        # The same handler may sit on a logger and on one of its ancestors: write each record once.
        if getattr(record, "_otel_rag_written", False):
            return
        record._otel_rag_written = True
        try:
            event_dict: EventDict = {
                "logger": record.name,
                "event": _message(record),
                _CREATED: record.created,
            }
            for key, value in record.__dict__.items():
                if key not in _RECORD_FIELDS and not key.startswith("_") and key != "color_message":
                    event_dict[key] = value
            if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
                event_dict.update(_access_fields(*record.args))
            if record.exc_info:
                event_dict["exc_info"] = record.exc_info
            method_name = record.levelname.lower()
            result: Any = event_dict
            for processor in self._processors:
                result = processor(None, method_name, result)
            _STDOUT.msg(result)
        except Exception as error:  # never the stdlib's "--- Logging error ---" traceback, never a lost line
            write_failure_line(record.levelname.lower(), (getattr(record, "msg", ""),), error)


def _access_fields(client: Any, method: Any, target: Any, version: Any, status: Any) -> dict[str, Any]:
    """uvicorn's access line arguments as the HTTP conventions' fields ("host:port", "path?query", "1.1")."""
    fields: dict[str, Any] = {"http.request.method": method, "http.response.status_code": status}
    address, colon, port = str(client).rpartition(":")
    if colon and port.isdigit():
        fields["client.address"], fields["client.port"] = address.strip("[]"), int(port)
    else:
        fields["client.address"] = client
    path, question, query = str(target).partition("?")
    fields["url.path"] = path
    if question:
        fields["url.query"] = query
    fields["network.protocol.version"] = version
    return fields


def _message(record: logging.LogRecord) -> str:
    """The record's message; when its `%` arguments do not fit, the template and the arguments as they are."""
    try:
        return record.getMessage()
    except Exception:
        return f"{safe_str(record.msg)} {safe_str(record.args)}"


def _is_replaceable(handler: logging.Handler) -> bool:
    """A handler writing to the console (or an earlier instance of ours)."""
    if isinstance(handler, JsonLogHandler):
        return True
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
        return False
    return handler.stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)


_handler: JsonLogHandler | None = None


def adopt_console_handlers() -> None:
    """Replace every stdout/stderr handler of every logger by ours, and make sure the root logger has it.

    Libraries (uvicorn, gunicorn) install their own console handlers with their own text formats; replacing
    them in place keeps their levels and propagation, and gives one JSON schema for every line.
    """
    handler = _handler
    if handler is None:
        return
    loggers = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        if not any(_is_replaceable(h) for h in logger.handlers):
            continue
        replaced: list[logging.Handler] = []
        for existing in logger.handlers:
            new = handler if _is_replaceable(existing) else existing
            if new not in replaced:
                replaced.append(new)
        logger.handlers = replaced
    root = logging.getLogger()
    if handler not in root.handlers:
        root.addHandler(handler)


def _after(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a logging configuration function so our handlers are re-adopted after it runs."""
    if getattr(func, "_otel_rag_wrapped", False):
        return func

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        adopt_console_handlers()
        return result

    wrapper._otel_rag_wrapped = True  # type: ignore[attr-defined]
    return wrapper


def build_processors(settings: Settings, provider: LoggerProvider | None) -> list[Processor]:
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        make_enricher(settings.service_name),
        format_exception,
        make_redactor(Redactor(settings.redact_keys, settings.redact_patterns)),
    ]
    if provider is not None:
        processors.append(OTelBridge(provider))
    if settings.log_format == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty()))
    else:
        processors.append(render_json)
    return processors


def setup_logging(settings: Settings, provider: LoggerProvider | None, *, bridge_stdlib: bool = True) -> None:
    """Configure structlog and (unless OTEL_RAG_LOG_STDLIB=false) the stdlib root logger.

    `provider` is the LoggerProvider to bridge into, or None when no log exporter would receive the records.
    `bridge_stdlib=False` keeps stdlib records out of it (the `logging` instrumentation disabled: as with the stock
    one, whose handler is what exports stdlib records), while they are still written as JSON lines.
    """
    global _handler
    processors = build_processors(settings, provider)
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    structlog.configure(
        processors=processors,
        wrapper_class=_safe_bound_logger(level),
        logger_factory=_stdout_logger_factory,
        cache_logger_on_first_use=True,
    )
    if not settings.log_stdlib:
        return
    _handler = JsonLogHandler(processors if bridge_stdlib else build_processors(settings, None))
    logging.getLogger().setLevel(level)
    adopt_console_handlers()
    logging.config.dictConfig = _after(logging.config.dictConfig)
    logging.config.fileConfig = _after(logging.config.fileConfig)
    _adopt_gunicorn_logging()


def _adopt_gunicorn_logging() -> None:
    """gunicorn installs its console handlers directly (no dictConfig): re-adopt after its setup runs."""
    if importlib.util.find_spec("gunicorn") is None:
        return
    from gunicorn import glogging

    glogging.Logger.setup = _after(glogging.Logger.setup)
