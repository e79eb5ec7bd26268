"""The in-process Prometheus endpoint (`OTEL_METRICS_EXPORTER=prometheus`), for one-process apps without a Collector.

Each process serves its own `/metrics` on OTEL_EXPORTER_PROMETHEUS_HOST:PORT (default localhost:9464). With several
workers only one can bind the port, and a scrape sees that worker's share only, so multi-worker apps send OTLP to
the Collector instead. Here we decide which process tries: not multiprocessing's helpers, not a multi-worker
server's supervisor (it warns instead); the reader itself (prometheus_reader.py) turns a taken port into a warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["EXPORTER_NAME", "metric_exporters_for_sdk", "take_warnings", "warn_later", "worker_count"]

EXPORTER_NAME = "prometheus"
READER_ENTRY_POINT = "otel_rag_prometheus"  # prometheus_reader.LocalPrometheusReader, opentelemetry_metrics_exporter
_pending_warnings: list[str] = []
_MULTIPROCESSING_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def worker_count(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Workers the server was asked for: uvicorn/gunicorn `--workers N`, `-w N`, or WEB_CONCURRENCY.

    Read in the supervisor, which has the server's command line (uvicorn's spawned workers configure before their
    command line is restored, and gunicorn's forked workers do not configure again).
    """
    args = list(argv) + environ.get("GUNICORN_CMD_ARGS", "").split()
    for index, arg in enumerate(args):
        value = None
        if arg in ("--workers", "-w") and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        if value is not None and value.isdigit():
            return int(value)
    concurrency = environ.get("WEB_CONCURRENCY", "")
    return int(concurrency) if concurrency.isdigit() else 1


def metric_exporters_for_sdk(
    exporters: Sequence[str], argv: Sequence[str], environ: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """The metric exporter names to give the SDK, and the warnings to log once logging is set up.

    `argv` is the whole command line (`sys.orig_argv`), so `python -c "...resource_tracker..."` is recognised.

    `prometheus` becomes our reader; a multi-worker server's supervisor leaves it out (it serves no requests, and
    spawned uvicorn workers cannot see the option yet when they configure, so they try the port themselves).
    """
    if EXPORTER_NAME not in exporters:
        return list(exporters), []
    if any(helper in arg for arg in argv for helper in _MULTIPROCESSING_HELPERS):
        # multiprocessing's own helper processes (started with the server's environment) must not take the port
        return [name for name in exporters if name != EXPORTER_NAME] or ["none"], []
    workers = worker_count(argv, environ)
    if workers > 1:
        return [name for name in exporters if name != EXPORTER_NAME] or ["none"], [
            f"OTEL_METRICS_EXPORTER=prometheus serves one process's metrics, but this server runs {workers} workers: "
            "at most one worker can serve the endpoint and a scrape sees that worker's share only. Send metrics to "
            "the Collector instead (OTEL_METRICS_EXPORTER=otlp)."
        ]
    return [READER_ENTRY_POINT if name == EXPORTER_NAME else name for name in exporters], []


def warn_later(message: str) -> None:
    """Keep a warning raised before logging is set up; the configurator logs it afterwards."""
    _pending_warnings.append(message)


def take_warnings() -> list[str]:
    """Warnings from readers created since the last call (logged by the configurator after logging is set up)."""
    taken = list(_pending_warnings)
    _pending_warnings.clear()
    return taken
