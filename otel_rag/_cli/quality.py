"""`otel-rag quality`: when did quality drop? Answer quality by time bucket, the drop if there is one, and what
changed then (from the store; the reader role is enough).

Exit status: 0 no drop detected, 1 a drop was detected, 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from typing import Any

import psycopg

from otel_rag._cli.options import time_window
from otel_rag._config.settings import ConfigError, load_settings
from otel_rag._store import queries
from otel_rag._store.quality import MIN_ANSWERS, QualityReport, quality_report

__all__ = ["add_quality_command", "parse_bucket"]

_BUCKET = re.compile(r"^(\d{1,4})\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_BUCKETS = 2000


def parse_bucket(text: str) -> dt.timedelta:
    """`30s`, `10m`, `1h`, `1d` as a time bucket."""
    match = _BUCKET.match(text.strip().lower())
    if not match or int(match[1]) == 0:
        raise queries.InvalidInput(f"--bucket {text!r} is not valid: use 30s, 10m, 1h or 1d")
    return dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _document(report: QualityReport) -> dict[str, Any]:
    drop = report.drop
    return {
        "window": {"start": report.start.isoformat(), "end": report.end.isoformat()},
        "bucket_seconds": report.bucket_seconds,
        "buckets": [
            {
                "start": b.start.isoformat(),
                "answers": b.answers,
                "hallucinated": b.hallucinated,
                "hallucination_rate": b.hallucination_rate,
                "scores": b.scores,
                "feedback": b.feedback,
                "feedback_count": b.feedback_count,
            }
            for b in report.buckets
        ],
        "drop": None
        if drop is None
        else {
            "at": drop.at.isoformat(),
            "before_rate": drop.before_rate,
            "after_rate": drop.after_rate,
            "before_answers": drop.before_answers,
            "after_answers": drop.after_answers,
            "p_value": drop.p_value,
            "confidence": drop.confidence,
        },
        "boundaries_tried": report.boundaries_tried,
        "changes": [vars(change) for change in report.changes],
    }


def _answer(report: QualityReport) -> str:
    """The answer to the question itself, in one line."""
    drop = report.drop
    if drop is not None:
        return (
            f"quality dropped at {drop.at:%Y-%m-%d %H:%M}: hallucination {_percent(drop.before_rate)} -> "
            f"{_percent(drop.after_rate)} (n={drop.before_answers} before, {drop.after_answers} after), "
            f"confidence {drop.confidence:.1%}"
        )
    if report.boundaries_tried == 0:
        return f"not enough answers to tell (fewer than {MIN_ANSWERS} on each side of every bucket boundary)"
    return f"no drop detected ({report.boundaries_tried} bucket boundaries with enough answers tried)"


def _render(report: QualityReport) -> str:
    names = sorted({name for bucket in report.buckets for name in bucket.scores})
    header = f"  {'bucket':<16} {'answers':>7} {'halluc.':>8}" + "".join(f" {name[:12]:>12}" for name in names)
    lines = [
        f"quality {report.start:%Y-%m-%d %H:%M} to {report.end:%H:%M}, by {report.bucket_seconds // 60} min",
        header,
    ]
    lines[1] += f" {'feedback':>8}"
    for bucket in report.buckets:
        scores = "".join(f" {bucket.scores[name]:>12.2f}" if name in bucket.scores else f" {'-':>12}" for name in names)
        feedback = f"{bucket.feedback:.2f}" if bucket.feedback is not None else "-"
        lines.append(
            f"  {bucket.start:%Y-%m-%d %H:%M} {bucket.answers:>7} {_percent(bucket.hallucination_rate):>8}"
            f"{scores} {feedback:>8}"
        )
    lines.append(_answer(report))
    if report.changes:
        lines.append("what changed then:")
        for change in report.changes:
            before = ", ".join(f"{value} ({n})" for value, n in sorted(change.before.items()))
            after = ", ".join(f"{value} ({n})" for value, n in sorted(change.after.items()))
            lines.append(f"  {change.what}: before {before}; after {after}")
    return "\n".join(lines)


def _quality(args: argparse.Namespace) -> int:
    settings = load_settings()
    dsn = args.dsn or settings.postgres_dsn
    if not dsn:
        raise ConfigError("OTEL_RAG_POSTGRES_DSN", "", "a postgresql:// URL (or pass --dsn)")
    bucket = parse_bucket(args.bucket)
    start, end = queries.time_range(args.since, args.until)
    if (end - start) / bucket > _MAX_BUCKETS:
        raise queries.InvalidInput(f"more than {_MAX_BUCKETS} buckets: use a larger --bucket or a shorter range")
    with psycopg.connect(dsn) as connection:
        report = quality_report(connection, settings.postgres_schema, start, end, bucket, service=args.service)
    print(json.dumps(_document(report), indent=2) if args.json else _render(report))
    return 1 if report.drop is not None else 0


def add_quality_command(commands: Any, store_options: Any) -> None:
    quality = commands.add_parser("quality", help="when did quality drop? exit 1 when a drop is detected")
    store_options(quality)
    quality.add_argument("--bucket", default="1h", help="bucket size: 30s, 10m, 1h, 1d (default 1h)")
    time_window(quality, "-24h")
    quality.add_argument("--service", help="only this service")
    quality.set_defaults(run=_quality)
