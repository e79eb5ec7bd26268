"""Cost of one structlog event through the otel-rag pipeline vs bare structlog with orjson, same run.

Both write one JSON line per event to /dev/null (write + flush, as a real stdout would). Ours runs inside a span
with a user set, so trace_id, span_id and user_id are filled in and redaction scans every value. Rounds
alternate between the variants so machine noise hits them alike; the figure is the median over rounds.
Goal (issue 2): ours <= 2x bare. Also shown: ours with the OTel LoggerProvider bridge on (a log exporter
configured), which the goal does not cover.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import TracerProvider

from bench._verdict import Goal, report
from otel_rag._config.settings import load_settings
from otel_rag._telemetry.logs import setup_logging
from otel_rag._telemetry.tracing import set_user

EVENTS = 50_000
ROUNDS = 7


class _DropExporter(LogRecordExporter):
    def export(self, batch: Any) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _bare(devnull: Any) -> Any:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.BytesLoggerFactory(devnull.buffer),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().bind(logger="bench")


def _ours(provider: LoggerProvider | None) -> Any:
    setup_logging(load_settings({"OTEL_SERVICE_NAME": "bench", "OTEL_RAG_LOG_STDLIB": "false"}), provider)
    return structlog.get_logger().bind(logger="bench")


def _time(log: Any, events: int) -> float:
    info = log.info
    start = time.perf_counter()
    for i in range(events):
        info("chunk.created", doc_id="doc-1", chunk_index=i, tokens=120)
    return (time.perf_counter() - start) / events * 1e6


def main(argv: list[str] | None = None) -> list[Goal]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args(argv)
    trace.set_tracer_provider(TracerProvider())
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(_DropExporter(), max_queue_size=200_000))
    devnull = open("/dev/null", "w")  # noqa: SIM115
    real_stdout = sys.stdout
    variants: dict[str, Callable[[], Any]] = {
        "bare structlog + orjson": lambda: _bare(devnull),
        "otel-rag": lambda: _ours(None),
        "otel-rag + OTel bridge": lambda: _ours(provider),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    tracer = trace.get_tracer("bench")
    sys.stdout = devnull
    try:
        with tracer.start_as_current_span("request"):
            set_user("user-1")
            for _ in range(args.rounds):
                for name, build in variants.items():
                    results[name].append(_time(build(), args.events))
    finally:
        sys.stdout = real_stdout
    base = statistics.median(results["bare structlog + orjson"])
    print(f"events per round: {args.events}, rounds: {args.rounds} (median shown)")
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"{name:<26} {median:6.2f} us/event  ({median / base:4.2f}x bare)  min {min(samples):.2f}")
    ours = statistics.median(results["otel-rag"]) / base
    bridged = statistics.median(results["otel-rag + OTel bridge"]) / base
    return report(
        [
            Goal("log_event line vs bare structlog", ours, 2.0, higher_is_better=False),
            Goal("log_event line with the OTel bridge vs bare structlog", bridged, 2.5, higher_is_better=False),
        ]
    )


if __name__ == "__main__":
    main()
