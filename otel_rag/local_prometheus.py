"""The in-process Prometheus endpoint (`OTEL_METRICS_EXPORTER=prometheus`), for one-process apps without a Collector.

Each process serves its own `/metrics` on OTEL_EXPORTER_PROMETHEUS_HOST:PORT (default localhost:9464). With several
workers only the first can bind the port, and a scrape sees that worker's share only, so multi-worker apps send
OTLP to the Collector instead: we warn when a multi-worker server is detected, and when the port is already taken we
leave this exporter out with a warning rather than fail the app (the stock reader would raise at start-up).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping, Sequence

__all__ = ["EXPORTER_NAME", "admit_local_prometheus", "worker_count"]

EXPORTER_NAME = "prometheus"
_logger = logging.getLogger("otel_rag")


def worker_count(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Workers the server was asked for: uvicorn/gunicorn `--workers N`, `-w N`, or WEB_CONCURRENCY.

    Worker processes keep their server's command line (gunicorn forks; uvicorn's spawned workers get the parent's
    argv), so this answers the same in the supervisor and in every worker.
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


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the exporter's own server does
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def admit_local_prometheus(exporters: Sequence[str], argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The metric exporters to use: `exporters` itself, or without `prometheus` when its port is taken."""
    if EXPORTER_NAME not in exporters:
        return list(exporters)
    workers = worker_count(argv, environ)
    if workers > 1:
        _logger.warning(
            "OTEL_METRICS_EXPORTER=prometheus serves metrics from one process, but this server runs %d workers: "
            "a scrape sees one worker's share. Send metrics to the Collector instead (OTEL_METRICS_EXPORTER=otlp).",
            workers,
        )
    host = environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost")
    port_text = environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464")
    port = int(port_text) if port_text.isdigit() else 9464
    if _port_free(host, port):
        return list(exporters)
    _logger.warning(
        "OTEL_EXPORTER_PROMETHEUS_PORT %s on %s is in use (another worker or program): this process's metrics are "
        "not served. Multi-worker apps should send metrics to the Collector (OTEL_METRICS_EXPORTER=otlp).",
        port,
        host,
    )
    return [name for name in exporters if name != EXPORTER_NAME] or ["none"]
