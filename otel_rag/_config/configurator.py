"""Builds the OTel SDK the otel-rag way: `configure()` for code, `OtelRagConfigurator` for the launcher.

Both do the same thing once per process: install JSON logging with redaction first (so nothing is ever logged in
clear), validate the environment (see config.py) and what the exporters need, build the tracer, meter and logger
providers from the standard OTEL_* variables (through the SDK's own initialisation, so exporters, samplers,
propagators and resource detectors keep their spec meaning), and add ours: `enduser.id` on spans, redaction in
front of every exporter, JSON logs bridged into the LoggerProvider, and context carried into thread pools. Any
failure stops start-up (see _startup.py). Modules that read OTEL_PROPAGATORS when imported are imported only after
it has been validated. Forked workers (gunicorn) are handled by the SDK itself: each child re-creates its export
threads and gets its own `service.instance.id`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

# The SDK's cached scan of installed entry points: the SDK, the launcher and we read it several times at start-up,
# and each uncached scan of every installed package costs ~15 ms.
from opentelemetry.util._importlib_metadata import entry_points

from otel_rag._config.settings import (
    LOGS_EXPORTER,
    METRICS_EXPORTER,
    SDK_DEFAULTS,
    SPOOL_DIR,
    TRACES_EXPORTER,
    ConfigError,
    Settings,
    StartupError,
    install_settings,
    load_settings,
)

__all__ = ["OtelRagConfigurator", "configure", "is_configured", "preflight", "prepare_launcher"]

_logger = logging.getLogger("otel_rag")
_lock = threading.Lock()
_configured = False
_launcher_settings: Settings | None = None  # what the distro validated, for the configurator that runs next

_EXPORTER_GROUPS = {
    TRACES_EXPORTER.env: ("traces", "opentelemetry_traces_exporter"),
    METRICS_EXPORTER.env: ("metrics", "opentelemetry_metrics_exporter"),
    LOGS_EXPORTER.env: ("logs", "opentelemetry_logs_exporter"),
}
_OTLP_ENTRY_POINTS = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
# The stock instrumentations our server spans replace: disabling any of them disables ours (as it would theirs).
HTTP_SERVER_INSTRUMENTATIONS = ("fastapi", "starlette", "asgi")


def apply_sdk_defaults() -> None:
    """Our defaults for the standard variables, written only where the user set nothing."""
    for name, value in SDK_DEFAULTS.items():
        os.environ.setdefault(name, value)


def install_safe_logging() -> None:
    """JSON lines with the built-in redaction, before anything that can fail: nothing is ever logged in clear."""
    from otel_rag._telemetry.logs import setup_logging

    setup_logging(Settings(), provider=None)


def preflight(settings: Settings) -> None:
    """Fail early, naming the variable, when an exporter cannot work: no such entry point, no transport for the
    chosen OTLP protocol, no DSN for postgres, a spool folder that cannot be created or written."""
    selected = {
        TRACES_EXPORTER.env: settings.traces_exporter,
        METRICS_EXPORTER.env: settings.metrics_exporter,
        LOGS_EXPORTER.env: settings.logs_exporter,
    }
    for variable, names in selected.items():
        signal_name, group = _EXPORTER_GROUPS[variable]
        available = {ep.name for ep in entry_points(group=group)}
        for name in names:
            if name == "otlp":
                protocol = settings.otlp_protocols[signal_name]
                if _OTLP_ENTRY_POINTS[protocol] not in available:
                    package = "opentelemetry-exporter-otlp-proto-" + ("grpc" if protocol == "grpc" else "http")
                    raise ConfigError(
                        "OTEL_EXPORTER_OTLP_PROTOCOL", protocol, f"a protocol whose exporter is installed ({package})"
                    )
                continue
            if name == "none" or name in available:
                continue
            accepted = ", ".join(sorted({"none", "otlp", *available}))
            raise ConfigError(variable, ",".join(names), f"a comma-separated list of {accepted}")
        if "postgres" in names and not settings.postgres_dsn:
            raise ConfigError("OTEL_RAG_POSTGRES_DSN", "", f"a postgresql:// URL ({variable} includes postgres)")
    if _uses_postgres(settings):
        _prepare_spool_dir(settings.spool_dir)


def _prepare_spool_dir(path: str) -> None:
    """The spool folder exists, is ours alone (0700 when we create it) and takes files."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        probe = os.path.join(path, f".probe-{os.getpid()}")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(
            SPOOL_DIR.env, path, f"a directory this process can create and write to ({error.strerror or error})"
        ) from None


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """Set one environment variable for the duration of the block, then restore it (or remove it)."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def is_configured() -> bool:
    return _configured


def prepare_launcher() -> None:
    """The distro's part under `opentelemetry-instrument`: safe logging, validation, our HTTP instrumentation."""
    global _launcher_settings
    from opentelemetry.instrumentation.environment_variables import OTEL_PYTHON_CONFIGURATOR

    install_safe_logging()
    apply_sdk_defaults()
    os.environ.setdefault(OTEL_PYTHON_CONFIGURATOR, "otel_rag")
    settings = load_settings()
    install_settings(settings)
    if not settings.sdk_disabled:
        preflight(settings)
        if not settings.instrumentation_disabled(*HTTP_SERVER_INSTRUMENTATIONS):
            from otel_rag._http.middleware import instrument_starlette

            instrument_starlette()
    _launcher_settings = settings


def configure(**sdk_kwargs: Any) -> Settings | None:
    """Configure OpenTelemetry and logging for this process from the environment.

    Idempotent: a second call logs a warning and changes nothing. With OTEL_SDK_DISABLED=true no SDK is
    built, but logs are still written as JSON lines.

    Args:
        **sdk_kwargs: passed to the OpenTelemetry SDK's own configurator (as the launcher does).

    Returns:
        The settings in effect, or None when the process was already configured.

    Raises:
        ConfigError: a variable holds a value that cannot work; the message names it and what it accepts.
        StartupError: telemetry could not be built for another reason; the message says what failed.
    """
    global _configured
    with _lock:
        if _configured:
            _logger.warning("otel_rag.configure() was called again; the first configuration stays in effect")
            return None
        install_safe_logging()
        apply_sdk_defaults()
        settings = _launcher_settings or load_settings()
        install_settings(settings)
        for warning in settings.warnings:
            _logger.warning(warning)
        try:
            _build(settings, sdk_kwargs)
        except (ConfigError, StartupError):
            raise
        except Exception as error:
            from otel_rag._config.startup import scrub_message

            raise StartupError(f"{type(error).__name__}: {scrub_message(str(error))}") from None
        _configured = True
        return settings


def _build(settings: Settings, sdk_kwargs: dict[str, Any]) -> None:
    from otel_rag._telemetry.logs import setup_logging

    if settings.sdk_disabled:
        setup_logging(settings, provider=None)
        return
    preflight(settings)
    from opentelemetry.sdk._configuration import _initialize_components
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    from otel_rag._telemetry.log_correlation import install_record_trace_fields
    from otel_rag._telemetry.metrics import start_health_counters
    from otel_rag._telemetry.prometheus_server import metric_exporters_for_sdk, take_warnings
    from otel_rag._telemetry.redaction import RedactingLogExporter, RedactingSpanExporter, Redactor, scrub_resource
    from otel_rag._telemetry.tracing import UserSpanProcessor, propagate_context_to_threads
    from otel_rag.rag import GenAIChildSpans
    from otel_rag.rag._langsmith import mirror_from_settings
    from otel_rag.rag._pricing import reload_prices

    reload_prices(settings)
    metric_exporters, metric_warnings = metric_exporters_for_sdk(settings.metrics_exporter, sys.orig_argv, os.environ)
    redactor = Redactor(settings.redact_keys, settings.redact_patterns)

    def export_span_processor(span_exporter: SpanExporter, *args: Any, **kwargs: Any) -> SpanProcessor:
        if isinstance(span_exporter, _loaded_class(_POSTGRES_EXPORTERS, "PostgresSpanExporter")):
            from otel_rag._store.exporters import PostgresSpanProcessor

            # The sink queues without I/O and redacts in its own thread: no second buffer that could drop.
            return PostgresSpanProcessor(span_exporter)
        if type(span_exporter) is _loaded_class(_OTLP_HTTP_SPAN_EXPORTER, "OTLPSpanExporter"):
            from otel_rag._telemetry.otlp import FastOTLPSpanExporter

            # Same exporter, same settings; only the protobuf encoder differs (see otlp.py).
            span_exporter.__class__ = FastOTLPSpanExporter
        return BatchSpanProcessor(RedactingSpanExporter(span_exporter, redactor))

    def export_log_processor(exporter: LogRecordExporter, *args: Any, **kwargs: Any) -> Any:
        if isinstance(exporter, _loaded_class(_POSTGRES_EXPORTERS, "PostgresLogExporter")):
            from otel_rag._store.exporters import PostgresLogProcessor

            return PostgresLogProcessor(exporter)
        return BatchLogRecordProcessor(RedactingLogExporter(exporter, redactor))

    span_processors: list[SpanProcessor] = [UserSpanProcessor(), GenAIChildSpans()]
    mirror = mirror_from_settings(settings, redactor)
    if mirror is not None:
        span_processors.append(mirror)
    exporter_args_map = _sink_exporter_args(settings, redactor)
    exporter_args_map.update(sdk_kwargs.pop("exporter_args_map", None) or {})
    resource_attributes = _resource_attributes(sdk_kwargs)
    # The SDK reads the exporters from the environment; this process's choice must not leak into the
    # workers it starts (they decide for themselves), so the variable is put back afterwards.
    with _environment(METRICS_EXPORTER.env, ",".join(metric_exporters)):
        _initialize_components(
            setup_logging_handler=False,
            span_processors=span_processors,
            export_span_processor=export_span_processor,
            export_log_record_processor=export_log_processor,
            exporter_args_map=exporter_args_map,
            resource_attributes=resource_attributes,
            **sdk_kwargs,
        )
    scrub_resource(trace.get_tracer_provider(), redactor)
    start_health_counters(sink=_uses_postgres(settings), langsmith=mirror is not None)
    # Bridge log lines into OTel only when some log exporter will receive them: it costs ~20 us a line.
    exporting_logs = any(name != "none" for name in settings.logs_exporter)
    bridge = _logs.get_logger_provider() if exporting_logs else None
    logging_instrumented = not settings.instrumentation_disabled("logging")
    setup_logging(settings, provider=bridge, bridge_stdlib=logging_instrumented)
    if settings.log_correlation and logging_instrumented:
        install_record_trace_fields()
    for warning in metric_warnings + take_warnings():
        _logger.warning(warning)
    propagate_context_to_threads(settings.thread_context)
    _flush_on_sigterm(settings.shutdown_timeout_ms / 1000)


# Modules whose classes the processors above look for. Imported only when configured (together ~90 ms of start-up):
# an exporter whose module was never imported cannot be one of them.
_POSTGRES_EXPORTERS = "otel_rag._store.exporters"
_OTLP_HTTP_SPAN_EXPORTER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def _uses_postgres(settings: Settings) -> bool:
    return "postgres" in settings.traces_exporter + settings.logs_exporter


def _sink_exporter_args(settings: Settings, redactor: Any) -> dict[Any, Any]:
    """What the SDK passes to our Postgres exporters; the store (psycopg, the writer) is imported only when used."""
    if not _uses_postgres(settings):
        return {}
    from otel_rag._store.exporters import PostgresLogExporter, PostgresSpanExporter

    sink_args = {"settings": settings, "redactor": redactor}
    return {PostgresSpanExporter: sink_args, PostgresLogExporter: sink_args}


def _loaded_class(module: str, name: str) -> Any:
    """The class, if its module has been imported; else an empty tuple, which nothing is an instance of (and no
    object's type is), so the checks above need no import."""
    loaded = sys.modules.get(module)
    return getattr(loaded, name) if loaded is not None else ()


def _resource_attributes(sdk_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The caller's resource attributes with ours: telemetry.distro.* replaces the launcher's telemetry.auto.version
    (which the conventions deprecate for it)."""
    from otel_rag._telemetry.identity import DISTRO_NAME, VERSION

    sdk_kwargs.pop("auto_instrumentation_version", None)
    return {
        **(sdk_kwargs.pop("resource_attributes", None) or {}),
        "telemetry.distro.name": DISTRO_NAME,
        "telemetry.distro.version": VERSION,
    }


def shutdown_telemetry(timeout: float) -> bool:
    """Flush and shut down every provider at once, waiting at most `timeout` seconds in all.

    In parallel, because one slow backend (an OTLP endpoint that is down retries for half a minute) must not use
    up the time another (the Postgres sink, which spools what it cannot write) needs. True when all finished.
    """
    threads = []
    for provider in (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider()):
        shutdown = getattr(provider, "shutdown", None)
        if shutdown is not None:
            thread = threading.Thread(target=_quietly, args=(shutdown,), name="otel-rag-shutdown", daemon=True)
            thread.start()
            threads.append(thread)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)


def _quietly(shutdown: Any) -> None:
    try:
        shutdown()
    except Exception:  # a failing exporter must not keep the others from flushing
        _logger.exception("telemetry shutdown failed")


def _flush_on_sigterm(timeout: float) -> None:
    """Make SIGTERM flush telemetry before the process dies.

    Servers such as uvicorn shut down gracefully on SIGTERM and then re-raise it with the handler that was there
    before them; with the default handler the process dies without running atexit, losing whatever is buffered.
    Installed only where nobody handles SIGTERM yet; after flushing, the signal's default action still happens.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not restart the flush
        shutdown_telemetry(timeout)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, on_sigterm)


class OtelRagConfigurator(_OTelSDKConfigurator):
    """The `opentelemetry_configurator` entry point `otel_rag`, run by `opentelemetry-instrument`."""

    def _configure(self, **kwargs: Any) -> None:
        from otel_rag._config.startup import exit_on_failure

        with exit_on_failure():
            configure(**kwargs)
