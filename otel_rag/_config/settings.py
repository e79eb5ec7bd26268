"""Every environment variable otel-rag reads, in one catalogue.

Each `Setting` names its variable, how to parse it, its default and a line of help. `load_settings()` reads
them all at start-up into one `Settings` object, which the composition root passes down (nobody else reads the
environment for a setting of ours), and raises `ConfigError` naming the variable and the accepted values, so a
typo stops the service before it runs half-observed. Standard OpenTelemetry and LangSmith variables are listed
too: they keep their spec meaning (the SDK reads them itself); we validate them early and show them in
`otel-rag config`. No message ever shows a password or token: secret values are masked in errors too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

__all__ = [
    "CATALOGUE",
    "ConfigError",
    "Setting",
    "Settings",
    "StartupError",
    "active_settings",
    "hide_passwords",
    "install_settings",
    "load_settings",
    "masked",
]


class ConfigError(ValueError):
    """A configuration variable holds a value we cannot use. The message never shows a secret."""

    def __init__(self, variable: str, value: str, accepted: str, *, shown: str | None = None) -> None:
        self.variable = variable
        self.value = value
        self.accepted = accepted
        shown = hide_passwords(value) if shown is None else shown
        super().__init__(f"{variable}={shown!r} is not valid; accepted: {accepted}")


class StartupError(RuntimeError):
    """Telemetry could not be built as configured (not one variable's fault); the message names what failed."""


class Rejected(ValueError):
    """Raised by a parser when the accepted values depend on this machine (installed entry points, a file)."""

    def __init__(self, accepted: str) -> None:
        super().__init__(accepted)
        self.accepted = accepted


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable: its parser, default and documentation."""

    env: str
    parse: Callable[[str], T]
    default: str | None
    help: str
    accepted: str
    secret: bool = False
    standard: bool = False  # defined by the OTel spec or LangSmith, read by their SDKs too

    def read(self, environ: Mapping[str, str]) -> T | None:
        raw = environ.get(self.env)
        if raw is None or raw.strip() == "":
            raw = self.default
        if raw is None:
            return None
        try:
            return self.parse(raw.strip())
        except Rejected as error:
            raise ConfigError(self.env, raw, error.accepted, shown=masked(self, raw)) from None
        except ValueError:
            raise ConfigError(self.env, raw, self.accepted, shown=masked(self, raw)) from None


# -- parsers -----------------------------------------------------------------------------------------------


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in choices:
            raise ValueError(raw)
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(raw)


def _str(raw: str) -> str:
    return raw


def _spec_bool(raw: str) -> bool:
    """The OpenTelemetry spec's boolean: only "true", in any case, is true; anything else is false."""
    return raw.lower() == "true"


def _header_patterns(raw: str) -> tuple[str, ...]:
    """Comma-separated regular expressions (the stock HTTP instrumentations' header lists)."""
    parts = _csv(raw)
    for part in parts:
        try:
            re.compile(part)
        except re.error as error:
            raise Rejected(f"comma-separated regular expressions; {part!r} is not one ({error})") from None
    return parts


def _ratio(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError(raw)
    return value


_HEADER_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _header_name(raw: str) -> str:
    if not _HEADER_TOKEN.match(raw):
        raise ValueError(raw)
    return raw.lower()


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _regex_list(raw: str) -> tuple[re.Pattern[str], ...]:
    # Patterns are separated by ";;" because regular expressions often contain commas.
    patterns = []
    for item in raw.split(";;"):
        if not item.strip():
            continue
        try:
            patterns.append(re.compile(item.strip()))
        except re.error:
            raise ValueError(item) from None
    return tuple(patterns)


def _url(raw: str) -> str:
    if not re.match(r"^https?://[^/\s]+", raw):
        raise ValueError(raw)
    return raw.rstrip("/")


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    return parse


_SIZE_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3}


def _size(raw: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", raw)
    if not match or match[2].lower() not in _SIZE_UNITS or int(match[1]) <= 0:
        raise ValueError(raw)
    return int(match[1]) * _SIZE_UNITS[match[2].lower()]


def _schema_name(raw: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,39}", raw):
        raise ValueError(raw)
    return raw


def _path(raw: str) -> str:
    return os.path.expanduser(raw)


def _postgres_dsn(raw: str) -> str:
    if not (raw.startswith(("postgresql://", "postgres://")) or ("=" in raw and "://" not in raw)):
        raise ValueError(raw)
    from psycopg import conninfo  # only when a DSN is set: psycopg costs start-up time

    try:
        conninfo.conninfo_to_dict(raw)
    except Exception:  # psycopg.ProgrammingError: its message repeats the DSN, password and all
        raise ValueError(raw) from None
    return raw


def _propagators(raw: str) -> tuple[str, ...]:
    """Names the SDK resolves through the `opentelemetry_propagator` entry points (or `none`)."""
    from opentelemetry.util._importlib_metadata import entry_points  # the SDK's cached scan

    names = _csv(raw)
    installed = {entry_point.name for entry_point in entry_points(group="opentelemetry_propagator")}
    if any(name != "none" and name not in installed for name in names) or not names:
        raise Rejected(f"a comma-separated list of {', '.join(sorted(installed | {'none'}))}")
    return names


def _prices_file(raw: str) -> dict[str, tuple[float, float]]:
    """A JSON price table, read and checked now, so a bad file stops start-up rather than a request later."""
    path = os.path.expanduser(raw)
    shape = 'a readable JSON file such as {"gpt-4o-mini": {"input": 0.15, "output": 0.6}} (USD per million tokens)'
    try:
        with open(path, "rb") as file:
            data = json.loads(file.read())
    except OSError as error:
        raise Rejected(f"{shape}; cannot read it: {error.strerror or error}") from None
    except ValueError as error:
        raise Rejected(f"{shape}; it is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise Rejected(f"{shape}; the top level is not an object")
    prices: dict[str, tuple[float, float]] = {}
    for model, entry in data.items():
        if not isinstance(entry, dict) or "input" not in entry or not set(entry) <= {"input", "output"}:
            raise Rejected(f"{shape}; the entry for {model!r} needs input (and optionally output)")
        values = (entry["input"], entry.get("output", 0.0))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e6 for v in values):
            raise Rejected(f"{shape}; the prices for {model!r} must be numbers from 0 to 1000000")
        prices[str(model)] = (float(values[0]), float(values[1]))
    return prices


def _otlp_protocol(raw: str) -> str:
    value = raw.lower()
    if value == "http/json":
        raise Rejected("http/protobuf, grpc (the OpenTelemetry Python SDK has no http/json exporter)")
    if value not in ("http/protobuf", "grpc"):
        raise ValueError(raw)
    return value


_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_EXPORTER_NAMES = "a comma-separated list such as otlp, console, none (or an installed exporter entry point)"

# -- the catalogue -----------------------------------------------------------------------------------------

LOG_FORMAT = Setting(
    "OTEL_RAG_LOG_FORMAT",
    _choice("json", "console"),
    "json",
    "json: one JSON object per line on stdout; console: readable, coloured lines for a terminal.",
    "json, console",
)
LOG_LEVEL = Setting(
    "OTEL_RAG_LOG_LEVEL",
    _choice(*_LOG_LEVELS),
    "info",
    "Lowest level written, for structlog and the stdlib root logger.",
    ", ".join(_LOG_LEVELS),
)
LOG_STDLIB = Setting(
    "OTEL_RAG_LOG_STDLIB",
    _bool,
    "true",
    "Route stdlib logging (uvicorn, gunicorn, libraries) through the same JSON pipeline, replacing their "
    "console handlers.",
    "true, false",
)
USER_ID_HEADER = Setting(
    "OTEL_RAG_USER_ID_HEADER",
    _header_name,
    "X-User-Id",
    "Request header whose value becomes the user id of the request (log field user_id, span enduser.id).",
    "an HTTP header name",
)


def _url_patterns(raw: str) -> re.Pattern[str]:
    """Comma-separated regular expressions, searched in a request's path (the stock instrumentations' format)."""
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    for part in parts:
        try:
            re.compile(part)
        except re.error as error:
            raise Rejected(f"comma-separated regular expressions; {part!r} is not one ({error})") from None
    return re.compile("|".join(f"(?:{part})" for part in parts))


EXCLUDED_URLS = Setting(
    "OTEL_PYTHON_EXCLUDED_URLS",
    _url_patterns,
    None,
    "Requests whose path matches are not traced (no span, no duration metric), e.g. /healthz,/debug/.",
    "comma-separated regular expressions",
    standard=True,
)
FASTAPI_EXCLUDED_URLS = Setting(
    "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS",
    _url_patterns,
    None,
    "Like OTEL_PYTHON_EXCLUDED_URLS, for FastAPI/Starlette apps; takes precedence over it.",
    "comma-separated regular expressions",
    standard=True,
)
THREAD_CONTEXT = Setting(
    "OTEL_RAG_THREAD_CONTEXT",
    _bool,
    "true",
    "Carry the caller's context (trace, user) into ThreadPoolExecutor and loop.run_in_executor work.",
    "true, false",
)
REDACT_KEYS = Setting(
    "OTEL_RAG_REDACT_KEYS",
    _csv,
    "",
    "Extra attribute/log keys whose values are always replaced by [REDACTED] (added to the built-in list "
    "of password, secret, token, api_key, authorization, cookie, dsn...).",
    "a comma-separated list of key names",
)
REDACT_PATTERNS = Setting(
    "OTEL_RAG_REDACT_PATTERNS",
    _regex_list,
    "",
    'Extra regular expressions (PII such as e-mail addresses) masked inside string values; separate several with ";;".',
    "regular expressions separated by ;;",
)
POSTGRES_DSN = Setting(
    "OTEL_RAG_POSTGRES_DSN",
    _postgres_dsn,
    None,
    "Postgres store for logs and spans (postgresql://user:password@host:port/db).",
    "a postgresql:// URL or a key=value connection string",
    secret=True,
)

POSTGRES_SCHEMA = Setting(
    "OTEL_RAG_POSTGRES_SCHEMA",
    _schema_name,
    "otel_rag",
    "Schema of the store's tables; also the prefix of its roles (<schema>_writer, _reader, _maintainer).",
    "lower-case letters, digits and _, starting with a letter or _, at most 40 characters",
)
POSTGRES_BATCH_SIZE = Setting(
    "OTEL_RAG_POSTGRES_BATCH_SIZE",
    _int_range(1, 100_000),
    "2000",
    "Most records the sink writes in one COPY.",
    "a whole number from 1 to 100000",
)
POSTGRES_FLUSH_INTERVAL = Setting(
    "OTEL_RAG_POSTGRES_FLUSH_INTERVAL",
    _int_range(1, 60_000),
    "50",
    "Longest a record waits in memory before the sink writes a (smaller) batch, in milliseconds.",
    "a whole number of milliseconds from 1 to 60000",
)
POSTGRES_QUEUE_SIZE = Setting(
    "OTEL_RAG_POSTGRES_QUEUE_SIZE",
    _int_range(100, 10_000_000),
    "100000",
    "Records held in memory; past half of it, while Postgres is unavailable, the oldest move to the spool.",
    "a whole number from 100 to 10000000",
)
POSTGRES_SHUTDOWN_TIMEOUT = Setting(
    "OTEL_RAG_POSTGRES_SHUTDOWN_TIMEOUT",
    _int_range(0, 600_000),
    "10000",
    "At exit, how long the sink may spend writing what is buffered before spooling the rest, in milliseconds.",
    "a whole number of milliseconds from 0 to 600000",
)
SHUTDOWN_TIMEOUT = Setting(
    "OTEL_RAG_SHUTDOWN_TIMEOUT",
    _int_range(0, 600_000),
    "10000",
    "On SIGTERM, the longest all exporters together may take to flush before the process exits, in milliseconds.",
    "a whole number of milliseconds from 0 to 600000",
)
SPOOL_DIR = Setting(
    "OTEL_RAG_SPOOL_DIR",
    _path,
    "~/.local/state/otel-rag/spool",
    "Local folder where records wait, durably, while Postgres is unavailable; replayed on recovery and restart.",
    "a directory path",
)
SPOOL_MAX_BYTES = Setting(
    "OTEL_RAG_SPOOL_MAX_BYTES",
    _size,
    "1GiB",
    "Most disk the spool may use; past it records are dropped, counted and reported.",
    "a size such as 1073741824, 512MiB or 1GiB",
)
SPOOL_FSYNC = Setting(
    "OTEL_RAG_SPOOL_FSYNC",
    _choice("always", "interval", "never"),
    "always",
    "When spooled data is forced to disk: after every write, at most once a second, or left to the OS.",
    "always, interval, never",
)

PRICES_FILE = Setting(
    "OTEL_RAG_PRICES_FILE",
    _prices_file,
    None,
    'JSON file of model prices in USD per million tokens, {"model": {"input": 0.15, "output": 0.6}}, merged over '
    "the built-in table (otel_rag/rag/_pricing.py); read and checked at start-up.",
    'a readable JSON file {"model": {"input": 0.15, "output": 0.6}}',
)
CAPTURE_CONTENT = Setting(
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    _choice("no_content", "span_only", "event_only", "span_and_event", "true", "false"),
    "NO_CONTENT",
    "Whether prompt, completion and chunk text is recorded (on spans, as log events, or both); otherwise only "
    "sizes and hashes. true means SPAN_AND_EVENT, false NO_CONTENT.",
    "NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT, true, false",
    standard=True,
)


def _trace_viewer_url(raw: str) -> str:
    if "{trace_id}" not in raw:
        raise ValueError(raw)
    return _url(raw)


DEBUG_TOKEN = Setting(
    "OTEL_RAG_DEBUG_TOKEN",
    _str,
    None,
    "Bearer token for the debug page and API (otel-rag serve, otel_rag.web.router). Unset: the router mounted in "
    "an app refuses every request, and otel-rag serve listens on 127.0.0.1 for direct local clients only.",
    "any secret string (16+ characters recommended)",
    secret=True,
)
DEBUG_DSN = Setting(
    "OTEL_RAG_DEBUG_DSN",
    _postgres_dsn,
    None,
    "Connection string the debug page reads the store with (a role granted otel_rag_reader). Unset: "
    "OTEL_RAG_POSTGRES_DSN.",
    "a postgresql:// URL or a key=value connection string",
    secret=True,
)
TRACE_VIEWER_URL = Setting(
    "OTEL_RAG_TRACE_VIEWER_URL",
    _trace_viewer_url,
    None,
    "Link from the debug page to the trace in Jaeger or Tempo; {trace_id} is replaced.",
    "an http(s) URL containing {trace_id}, e.g. http://localhost:16686/trace/{trace_id}",
)


def _archive_url(raw: str) -> str:
    if not re.match(r"^(s3://[^/\s]+(/\S*)?|file:///\S*)$", raw):
        raise ValueError(raw)
    return raw.rstrip("/")


HOT_DAYS = Setting(
    "OTEL_RAG_HOT_DAYS",
    _int_range(1, 3650),
    "7",
    "Retention: days (UTC, counted back from today) the store keeps every row.",
    "a whole number of days from 1 to 3650",
)
WARM_DAYS = Setting(
    "OTEL_RAG_WARM_DAYS",
    _int_range(1, 3650),
    "30",
    "Retention: days before a day's partitions are dropped; past the hot days they hold only the warm set "
    "(interesting traces and a sample). At least OTEL_RAG_HOT_DAYS.",
    "a whole number of days from 1 to 3650, at least OTEL_RAG_HOT_DAYS",
)
WARM_SAMPLE_RATIO = Setting(
    "OTEL_RAG_WARM_SAMPLE_RATIO",
    _ratio,
    "0.1",
    "Retention: share of the other traces the warm days keep, decided by trace id as a TraceIdRatioBased sampler.",
    "a number from 0 to 1",
)
ARCHIVE_URL = Setting(
    "OTEL_RAG_ARCHIVE_URL",
    _archive_url,
    None,
    "Retention: where whole days go as Parquet before they are thinned or dropped (s3://bucket/prefix, with the "
    "AWS_* variables, AWS_ENDPOINT_URL included; or file:///folder). Unset: nothing leaves Postgres.",
    "s3://bucket[/prefix] or file:///absolute/folder",
)
ARCHIVE_DAYS = Setting(
    "OTEL_RAG_ARCHIVE_DAYS",
    _int_range(1, 36500),
    "365",
    "Retention: days the archive keeps a day; older objects are deleted by the retention run. At least "
    "OTEL_RAG_WARM_DAYS.",
    "a whole number of days from 1 to 36500, at least OTEL_RAG_WARM_DAYS",
)
PROMETHEUS_URL = Setting(
    "OTEL_RAG_PROMETHEUS_URL",
    _url,
    None,
    "Prometheus that scrapes the Collector (http://prometheus:9090): `otel-rag health` reads the pipeline's spools, "
    "drops and LangSmith failures and the alerts firing from its HTTP API.",
    "an http:// or https:// URL",
)

MIRROR_LANGSMITH = Setting(
    "OTEL_RAG_LANGSMITH",
    _bool,
    None,
    "Mirror RAG spans to LangSmith. Unset: on when LANGSMITH_API_KEY is set.",
    "true, false",
)
LANGSMITH_SAMPLE_RATIO = Setting(
    "OTEL_RAG_LANGSMITH_SAMPLE_RATIO",
    _ratio,
    "1.0",
    "Share of traces mirrored to LangSmith, decided from the trace id (a trace is mirrored whole or not at all).",
    "a number from 0 to 1",
)

SERVICE_NAME = Setting(
    "OTEL_SERVICE_NAME", _str, None, "Service name on every span, metric and log line.", "any", standard=True
)
RESOURCE_ATTRIBUTES = Setting(
    "OTEL_RESOURCE_ATTRIBUTES",
    _str,
    None,
    "Extra resource attributes, key=value pairs.",
    "key=value,...",
    standard=True,
)
SDK_DISABLED = Setting(
    "OTEL_SDK_DISABLED",
    _spec_bool,
    "false",
    "Turn the SDK off entirely (only true does; any other value is false, with a warning, as the spec says).",
    "true, false",
    standard=True,
)
DISABLED_INSTRUMENTATIONS = Setting(
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
    _csv,
    None,
    "Instrumentations the launcher does not load; fastapi, starlette or asgi (or *) also turns off our HTTP "
    "server spans, and logging our export of stdlib log records and their correlation fields.",
    "a comma-separated list of instrumentation names, or *",
    standard=True,
)
LOG_CORRELATION = Setting(
    "OTEL_PYTHON_LOG_CORRELATION",
    _spec_bool,
    "false",
    "Add otelTraceID, otelSpanID, otelTraceSampled and otelServiceName to every stdlib log record, as the stock "
    "logging instrumentation does (for your own formatters; our JSON lines always carry trace_id and span_id).",
    "true, false",
    standard=True,
)


def _header_capture(which: str, help_text: str) -> Setting[tuple[str, ...]]:
    return Setting(
        f"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_{which}",
        _header_patterns,
        None,
        help_text,
        "comma-separated header names or regular expressions (.* for all)",
        standard=True,
    )


CAPTURE_REQUEST_HEADERS = _header_capture(
    "SERVER_REQUEST", "Request headers recorded on the server span as http.request.header.<name> (a list of values)."
)
CAPTURE_RESPONSE_HEADERS = _header_capture(
    "SERVER_RESPONSE", "Response headers recorded on the server span as http.response.header.<name>."
)
SANITIZE_HEADERS = _header_capture(
    "SANITIZE_FIELDS",
    "Captured headers whose values are replaced by [REDACTED] (our redaction of secrets applies as well).",
)
TRACES_EXPORTER = Setting("OTEL_TRACES_EXPORTER", _csv, "otlp", "Span exporters.", _EXPORTER_NAMES, standard=True)
METRICS_EXPORTER = Setting("OTEL_METRICS_EXPORTER", _csv, "otlp", "Metric exporters.", _EXPORTER_NAMES, standard=True)
PROMETHEUS_HOST = Setting(
    "OTEL_EXPORTER_PROMETHEUS_HOST",
    _str,
    "localhost",
    "Address of the in-process Prometheus endpoint (OTEL_METRICS_EXPORTER=prometheus, one-process apps only).",
    "a host name or IP address",
    standard=True,
)
PROMETHEUS_PORT = Setting(
    "OTEL_EXPORTER_PROMETHEUS_PORT",
    _int_range(1, 65535),
    "9464",
    "Port of the in-process Prometheus endpoint (/metrics).",
    "an integer from 1 to 65535",
    standard=True,
)
LOGS_EXPORTER = Setting(
    "OTEL_LOGS_EXPORTER",
    _csv,
    "otlp",
    "Log exporters (log lines always go to stdout as well; none: stdout only).",
    _EXPORTER_NAMES,
    standard=True,
)
OTLP_ENDPOINT = Setting(
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    _url,
    "http://localhost:4318",
    "Where OTLP goes (the Collector).",
    "an http:// or https:// URL",
    standard=True,
)
OTLP_PROTOCOL = Setting(
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    _otlp_protocol,
    "http/protobuf",
    "OTLP transport (our default: http/protobuf, which is fork-safe and needs no gRPC runtime; grpc sends to the "
    "Collector's port 4317). The OpenTelemetry Python SDK has no http/json exporter.",
    "http/protobuf, grpc",
    standard=True,
)


def _signal_protocol(signal: str) -> Setting[str]:
    return Setting(
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL",
        _otlp_protocol,
        None,
        f"OTLP transport for {signal}; unset: OTEL_EXPORTER_OTLP_PROTOCOL.",
        "http/protobuf, grpc",
        standard=True,
    )


TRACES_PROTOCOL = _signal_protocol("traces")
METRICS_PROTOCOL = _signal_protocol("metrics")
LOGS_PROTOCOL = _signal_protocol("logs")
OTLP_HEADERS = Setting(
    "OTEL_EXPORTER_OTLP_HEADERS",
    _str,
    None,
    "Headers sent with OTLP requests.",
    "key=value,...",
    secret=True,
    standard=True,
)
TRACES_SAMPLER = Setting(
    "OTEL_TRACES_SAMPLER",
    _str,
    "parentbased_always_on",
    "Head sampler, resolved by the SDK (an unknown name: a warning and the default, as the SDK does).",
    ", ".join(_SAMPLERS) + " or an installed opentelemetry_traces_sampler entry point",
    standard=True,
)
TRACES_SAMPLER_ARG = Setting(
    "OTEL_TRACES_SAMPLER_ARG",
    _str,
    None,
    "The sampler's argument: the ratio of the traceidratio samplers (not a number from 0 to 1: a warning and "
    "1.0, as the SDK does).",
    "a number from 0 to 1 for the traceidratio samplers",
    standard=True,
)
PROPAGATORS = Setting(
    "OTEL_PROPAGATORS",
    _propagators,
    "tracecontext,baggage",
    "Context propagators, by their entry point names; checked at start-up.",
    "a comma-separated list of installed propagators (tracecontext, baggage, ...) or none",
    standard=True,
)
LANGSMITH_API_KEY = Setting("LANGSMITH_API_KEY", _str, None, "LangSmith API key.", "a key", secret=True, standard=True)
LANGSMITH_ENDPOINT = Setting(
    "LANGSMITH_ENDPOINT",
    _url,
    "https://api.smith.langchain.com",
    "LangSmith API endpoint.",
    "an http:// or https:// URL",
    standard=True,
)
LANGSMITH_PROJECT = Setting(
    "LANGSMITH_PROJECT", _str, "default", "LangSmith project for mirrored runs.", "any", standard=True
)

CATALOGUE: tuple[Setting[Any], ...] = (
    LOG_FORMAT,
    LOG_LEVEL,
    LOG_STDLIB,
    USER_ID_HEADER,
    EXCLUDED_URLS,
    FASTAPI_EXCLUDED_URLS,
    THREAD_CONTEXT,
    REDACT_KEYS,
    REDACT_PATTERNS,
    POSTGRES_DSN,
    POSTGRES_SCHEMA,
    POSTGRES_BATCH_SIZE,
    POSTGRES_FLUSH_INTERVAL,
    POSTGRES_QUEUE_SIZE,
    POSTGRES_SHUTDOWN_TIMEOUT,
    SHUTDOWN_TIMEOUT,
    SPOOL_DIR,
    SPOOL_MAX_BYTES,
    SPOOL_FSYNC,
    PRICES_FILE,
    HOT_DAYS,
    WARM_DAYS,
    WARM_SAMPLE_RATIO,
    ARCHIVE_URL,
    ARCHIVE_DAYS,
    PROMETHEUS_URL,
    MIRROR_LANGSMITH,
    LANGSMITH_SAMPLE_RATIO,
    DEBUG_TOKEN,
    DEBUG_DSN,
    TRACE_VIEWER_URL,
    SERVICE_NAME,
    RESOURCE_ATTRIBUTES,
    SDK_DISABLED,
    DISABLED_INSTRUMENTATIONS,
    LOG_CORRELATION,
    CAPTURE_REQUEST_HEADERS,
    CAPTURE_RESPONSE_HEADERS,
    SANITIZE_HEADERS,
    TRACES_EXPORTER,
    METRICS_EXPORTER,
    PROMETHEUS_HOST,
    PROMETHEUS_PORT,
    LOGS_EXPORTER,
    OTLP_ENDPOINT,
    OTLP_PROTOCOL,
    TRACES_PROTOCOL,
    METRICS_PROTOCOL,
    LOGS_PROTOCOL,
    OTLP_HEADERS,
    TRACES_SAMPLER,
    TRACES_SAMPLER_ARG,
    PROPAGATORS,
    CAPTURE_CONTENT,
    LANGSMITH_API_KEY,
    LANGSMITH_ENDPOINT,
    LANGSMITH_PROJECT,
)

# Defaults the distro writes into the environment (setdefault) before the OTel SDK reads it.
SDK_DEFAULTS: dict[str, str] = {
    TRACES_EXPORTER.env: "otlp",
    METRICS_EXPORTER.env: "otlp",
    LOGS_EXPORTER.env: "otlp",
    OTLP_PROTOCOL.env: "http/protobuf",
}


@dataclass(frozen=True)
class Settings:
    """The effective configuration, parsed and validated: built once at start-up and passed down."""

    log_format: str = "json"
    log_level: str = "info"
    log_stdlib: bool = True
    user_id_header: str = "x-user-id"
    excluded_urls: re.Pattern[str] | None = None
    thread_context: bool = True
    redact_keys: tuple[str, ...] = ()
    redact_patterns: tuple[re.Pattern[str], ...] = ()
    postgres_dsn: str | None = None
    postgres_schema: str = "otel_rag"
    postgres_batch_size: int = 2000
    postgres_flush_interval_ms: int = 50
    postgres_queue_size: int = 100_000
    postgres_shutdown_timeout_ms: int = 10_000
    shutdown_timeout_ms: int = 10_000
    spool_dir: str = "~/.local/state/otel-rag/spool"
    spool_max_bytes: int = 1 << 30
    spool_fsync: str = "always"
    prices: dict[str, tuple[float, float]] | None = None
    capture_content: str = "no_content"
    langsmith_enabled: bool = False
    langsmith_api_key: str | None = None
    langsmith_endpoint: str = "https://api.smith.langchain.com"
    langsmith_project: str = "default"
    langsmith_sample_ratio: float = 1.0
    debug_token: str | None = None
    debug_dsn: str | None = None
    trace_viewer_url: str | None = None
    hot_days: int = 7
    warm_days: int = 30
    warm_sample_ratio: float = 0.1
    archive_url: str | None = None
    archive_days: int = 365
    prometheus_url: str | None = None
    service_name: str = "unknown_service"
    sdk_disabled: bool = False
    disabled_instrumentations: tuple[str, ...] = ()
    log_correlation: bool = False
    capture_request_headers: tuple[str, ...] = ()
    capture_response_headers: tuple[str, ...] = ()
    sanitize_headers: tuple[str, ...] = ()
    traces_exporter: tuple[str, ...] = ("otlp",)
    metrics_exporter: tuple[str, ...] = ("otlp",)
    logs_exporter: tuple[str, ...] = ("otlp",)
    prometheus_host: str = "localhost"
    prometheus_port: int = 9464
    otlp_endpoint: str = "http://localhost:4318"
    otlp_protocol: str = "http/protobuf"
    otlp_protocols: dict[str, str] = field(default_factory=dict)  # per signal: traces, metrics, logs
    propagators: tuple[str, ...] = ("tracecontext", "baggage")
    raw: dict[str, str | None] = field(repr=False, default_factory=dict)
    warnings: tuple[str, ...] = ()  # standard variables the SDK would warn about; logged once configured

    def instrumentation_disabled(self, *names: str) -> bool:
        """Whether OTEL_PYTHON_DISABLED_INSTRUMENTATIONS turns off any of these instrumentations (or all: *)."""
        return any(name in self.disabled_instrumentations for name in ("*", *names))


def _spec_bool_warnings(env: Mapping[str, str]) -> list[str]:
    """The spec: a boolean other than true or false is false, and the SDK SHOULD say so."""
    warnings = []
    for setting in (SDK_DISABLED, LOG_CORRELATION):
        raw = (env.get(setting.env) or "").strip()
        if raw and raw.lower() not in ("true", "false"):
            warnings.append(f"{setting.env}={raw!r} is neither true nor false: treated as false, as the spec says")
    return warnings


def _service_name(environ: Mapping[str, str]) -> str:
    name = SERVICE_NAME.read(environ)
    if name:
        return name
    for pair in (environ.get(RESOURCE_ATTRIBUTES.env) or "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == "service.name" and value.strip():
            return value.strip()
    return "unknown_service"


def _check_retention_order(env: Mapping[str, str], values: dict[str, Any]) -> None:
    """Hot days <= warm days <= archive days: a day cannot leave the archive before it leaves Postgres."""
    for shorter, longer in ((HOT_DAYS, WARM_DAYS), (WARM_DAYS, ARCHIVE_DAYS)):
        if values[longer.env] < values[shorter.env]:
            raise ConfigError(
                longer.env, env.get(longer.env) or str(longer.default), f"{longer.accepted} ({values[shorter.env]})"
            )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate every catalogued variable; raise ConfigError on the first bad one."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {setting.env: setting.read(env) for setting in CATALOGUE}
    mirror = values[MIRROR_LANGSMITH.env]
    protocol = values[OTLP_PROTOCOL.env]
    _check_retention_order(env, values)
    return Settings(
        log_format=values[LOG_FORMAT.env],
        log_level=values[LOG_LEVEL.env],
        log_stdlib=values[LOG_STDLIB.env],
        user_id_header=values[USER_ID_HEADER.env],
        excluded_urls=values[FASTAPI_EXCLUDED_URLS.env] or values[EXCLUDED_URLS.env],
        thread_context=values[THREAD_CONTEXT.env],
        redact_keys=values[REDACT_KEYS.env],
        redact_patterns=values[REDACT_PATTERNS.env],
        postgres_dsn=values[POSTGRES_DSN.env],
        postgres_schema=values[POSTGRES_SCHEMA.env],
        postgres_batch_size=values[POSTGRES_BATCH_SIZE.env],
        postgres_flush_interval_ms=values[POSTGRES_FLUSH_INTERVAL.env],
        postgres_queue_size=values[POSTGRES_QUEUE_SIZE.env],
        postgres_shutdown_timeout_ms=values[POSTGRES_SHUTDOWN_TIMEOUT.env],
        shutdown_timeout_ms=values[SHUTDOWN_TIMEOUT.env],
        spool_dir=values[SPOOL_DIR.env],
        spool_max_bytes=values[SPOOL_MAX_BYTES.env],
        spool_fsync=values[SPOOL_FSYNC.env],
        prices=values[PRICES_FILE.env],
        capture_content=values[CAPTURE_CONTENT.env],
        langsmith_enabled=bool(mirror) if mirror is not None else bool(values[LANGSMITH_API_KEY.env]),
        langsmith_api_key=values[LANGSMITH_API_KEY.env],
        langsmith_endpoint=values[LANGSMITH_ENDPOINT.env],
        langsmith_project=values[LANGSMITH_PROJECT.env],
        langsmith_sample_ratio=values[LANGSMITH_SAMPLE_RATIO.env],
        debug_token=values[DEBUG_TOKEN.env],
        debug_dsn=values[DEBUG_DSN.env],
        trace_viewer_url=values[TRACE_VIEWER_URL.env],
        hot_days=values[HOT_DAYS.env],
        warm_days=values[WARM_DAYS.env],
        warm_sample_ratio=values[WARM_SAMPLE_RATIO.env],
        archive_url=values[ARCHIVE_URL.env],
        archive_days=values[ARCHIVE_DAYS.env],
        prometheus_url=values[PROMETHEUS_URL.env],
        service_name=_service_name(env),
        sdk_disabled=values[SDK_DISABLED.env],
        disabled_instrumentations=values[DISABLED_INSTRUMENTATIONS.env] or (),
        log_correlation=values[LOG_CORRELATION.env],
        capture_request_headers=values[CAPTURE_REQUEST_HEADERS.env] or (),
        capture_response_headers=values[CAPTURE_RESPONSE_HEADERS.env] or (),
        sanitize_headers=values[SANITIZE_HEADERS.env] or (),
        traces_exporter=values[TRACES_EXPORTER.env],
        metrics_exporter=values[METRICS_EXPORTER.env],
        logs_exporter=values[LOGS_EXPORTER.env],
        prometheus_host=values[PROMETHEUS_HOST.env],
        prometheus_port=values[PROMETHEUS_PORT.env],
        otlp_endpoint=values[OTLP_ENDPOINT.env],
        otlp_protocol=protocol,
        otlp_protocols={
            "traces": values[TRACES_PROTOCOL.env] or protocol,
            "metrics": values[METRICS_PROTOCOL.env] or protocol,
            "logs": values[LOGS_PROTOCOL.env] or protocol,
        },
        propagators=values[PROPAGATORS.env],
        raw={setting.env: env.get(setting.env) for setting in CATALOGUE},
        warnings=tuple(_spec_bool_warnings(env)),
    )


_installed: Settings | None = None


def install_settings(settings: Settings | None) -> Settings | None:
    """Make `settings` the process's settings (configure() does this once, before anything reads them); returns
    the ones they replace, so tests can put them back. None: read the environment again on next use."""
    global _installed
    previous, _installed = _installed, settings
    return previous


def active_settings() -> Settings:
    """The settings configure() installed; before that (a library used without configure()), the environment's,
    read once. A bad variable there gives the defaults rather than an error on a request."""
    global _installed
    if _installed is None:
        try:
            _installed = load_settings()
        except ConfigError:
            _installed = Settings()
    return _installed


_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?=@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<key>password\s*=\s*)(?P<password>\S+)", re.I)


def hide_passwords(text: str) -> str:
    """`text` with the password of any URL (user:password@) and of any password=... pair replaced by ****."""
    return _KV_PASSWORD.sub(r"\g<key>****", _URL_PASSWORD.sub(r"\g<scheme>****", text))


@overload
def masked(setting: Setting[Any], raw: str) -> str: ...
@overload
def masked(setting: Setting[Any], raw: None) -> None: ...
def masked(setting: Setting[Any], raw: str | None) -> str | None:
    """The value as `otel-rag config` shows it: secrets hidden, DSN passwords replaced."""
    if raw is None:
        return None
    if setting in (POSTGRES_DSN, DEBUG_DSN):
        return hide_passwords(raw)
    if setting.secret:
        return "****" if len(raw) < 12 else f"****{raw[-4:]}"
    return hide_passwords(raw)
