"""`otel-rag quality`: when did quality drop? Answer quality by time bucket, the drop if there is one, and what
changed then (from the store; the reader role is enough).

Exit status: 0 no drop detected, 1 a drop was detected, 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import psycopg

from otel_rag._cli.options import time_window
from otel_rag._config.settings import ConfigError, load_settings
from otel_rag._store import queries
from otel_rag._store.quality import MIN_ANSWERS, QualityReport, quality_report

__all__ = ["add_quality_command"]

_MAX_BUCKETS = 2000


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _clock(report: QualityReport) -> str:
    """How a bucket's start is written: to the second when buckets are shorter than a minute."""
    return "%Y-%m-%d %H:%M:%S" if report.bucket_seconds % 60 else "%Y-%m-%d %H:%M"


def _size(seconds: int) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % length == 0:
            return f"{seconds // length} {unit}"
    return f"{seconds} s"


def _answer(report: QualityReport) -> str:
    """The answer to the question itself, in one line."""
    drop = report.drop
    if drop is not None:
        return (
            f"quality dropped at {drop.at.strftime(_clock(report))}: hallucination {_percent(drop.before_rate)} -> "
            f"{_percent(drop.after_rate)} (n={drop.before_answers} before, {drop.after_answers} after), "
            f"confidence {drop.confidence:.1%}"
        )
    if report.boundaries_tried == 0:
        return f"not enough answers to tell (fewer than {MIN_ANSWERS} on each side of every bucket boundary)"
    return f"no drop detected ({report.boundaries_tried} bucket boundaries with enough answers tried)"


def _render(report: QualityReport) -> str:
    names = sorted({name for bucket in report.buckets for name in bucket.scores})
    clock = _clock(report)
    width = len(report.start.strftime(clock))
    header = f"  {'bucket':<{width}} {'answers':>7} {'halluc.':>8}" + "".join(f" {name[:12]:>12}" for name in names)
    lines = [
        f"quality {report.start.strftime(clock)} to {report.end.strftime(clock[9:])}, "
        f"by {_size(report.bucket_seconds)}",
        header,
    ]
    lines[1] += f" {'feedback':>8}"
    for bucket in report.buckets:
        scores = "".join(f" {bucket.scores[name]:>12.2f}" if name in bucket.scores else f" {'-':>12}" for name in names)
        feedback = f"{bucket.feedback:.2f}" if bucket.feedback is not None else "-"
        lines.append(
            f"  {bucket.start.strftime(clock)} {bucket.answers:>7} {_percent(bucket.hallucination_rate):>8}"
            f"{scores} {feedback:>8}"
        )
    lines.append(_answer(report))
    if report.changes:
        lines.append("what changed then:")
        for change in report.changes:
            lines.append(f"  {change.what}: before {_most_first(change.before)}; after {_most_first(change.after)}")
    return "\n".join(lines)


def _most_first(counts: dict[str, int]) -> str:
    return ", ".join(f"{value} ({n})" for value, n in sorted(counts.items(), key=lambda item: -item[1]))


def _quality(args: argparse.Namespace) -> int:
    settings = load_settings()
    dsn = args.dsn or settings.postgres_dsn
    if not dsn:
        raise ConfigError("OTEL_RAG_POSTGRES_DSN", "", "a postgresql:// URL (or pass --dsn)")
    bucket = queries.parse_bucket(args.bucket, "--bucket")
    start, end = queries.time_range(args.since, args.until)
    if (end - start) / bucket > _MAX_BUCKETS:
        raise queries.InvalidInput(f"more than {_MAX_BUCKETS} buckets: use a larger --bucket or a shorter range")
    with psycopg.connect(dsn) as connection:
        report = quality_report(connection, settings.postgres_schema, start, end, bucket, service=args.service)
    print(json.dumps(report.to_document(), indent=2) if args.json else _render(report))
    return 1 if report.drop is not None else 0


def add_quality_command(commands: Any, store_options: Any) -> None:
    quality = commands.add_parser("quality", help="when did quality drop? exit 1 when a drop is detected")
    store_options(quality)
    quality.add_argument("--bucket", default="1h", help="bucket size: 30s, 10m, 1h, 1d (default 1h)")
    time_window(quality, "-24h")
    quality.add_argument("--service", help="only this service")
    quality.set_defaults(run=_quality)
