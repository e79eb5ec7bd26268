"""40 days of store rows with known interesting traces, for the retention tests and bench/retention.py.

Each day holds: a trace with an error span, one with an error-level log, one with a hallucination, one with user
feedback of 1, one whose root is far slower than the day's others, a trace that crosses midnight into the next day
with its error after midnight, `plain` ordinary traces (root, two children, two log lines), and log lines outside
any trace (one error, the rest info). `expected_warm(day)` says, independently of the SQL under test, which traces
and trace-less lines the warm set of that day must keep: the SDK's own TraceIdRatioBased sampler decides the
sample, and the p95 is computed here the way percentile_cont does.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

from otel_rag._store.migrate import ensure_partitions

ROUTE = "/ask"


@dataclass
class Seeded:
    """What was written, by day: span rows and log rows (as dicts), and the interesting trace ids."""

    spans: dict[dt.date, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    logs: dict[dt.date, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    interesting: dict[dt.date, set[str]] = field(default_factory=lambda: defaultdict(set))

    def traces(self, day: dt.date) -> set[str]:
        return {row["trace_id"] for row in self.spans[day]} | {
            row["trace_id"] for row in self.logs[day] if row["trace_id"]
        }


def sampled(ratio: float, hex_id: str) -> bool:
    """The SDK's decision for this id (its low 64 bits), the reference the SQL must agree with."""
    result = TraceIdRatioBased(ratio).should_sample(None, int(hex_id, 16), "x")
    return result.decision is Decision.RECORD_AND_SAMPLE


class _Writer:
    def __init__(self, rng: random.Random, seeded: Seeded) -> None:
        self.rng = rng
        self.seeded = seeded

    def span(self, trace_id: str, start: dt.datetime, ms: float, parent: str | None, **extra: Any) -> str:
        span_id = f"{self.rng.getrandbits(64):016x}"
        row = {
            "time": start,
            "end_time": start + dt.timedelta(milliseconds=ms),
            "duration_ms": ms,
            "trace_id": trace_id,
            "span_id": span_id,
            "parent_span_id": parent,
            "service_name": "rag-api",
            "name": extra.pop("name", f"POST {ROUTE}" if parent is None else "rag.retrieve"),
            "kind": "SERVER" if parent is None else "INTERNAL",
            "status": extra.pop("status", "UNSET"),
            "attributes": extra.pop("attributes", {"http.route": ROUTE} if parent is None else {}),
            "parent_remote": False if parent is None else None,
        }
        self.seeded.spans[start.date()].append(row)
        return span_id

    def log(self, trace_id: str | None, when: dt.datetime, severity: int = 9, **attributes: object) -> None:
        row = {
            "time": when,
            "record_id": uuid.UUID(int=self.rng.getrandbits(128)),
            "trace_id": trace_id,
            "span_id": None,
            "service_name": "rag-api",
            "severity": "ERROR" if severity >= 17 else "INFO",
            "severity_number": severity,
            "body": "something happened" if not attributes else "gen_ai.evaluation.result",
            "attributes": attributes,
        }
        self.seeded.logs[when.date()].append(row)

    def trace(self, start: dt.datetime, root_ms: float, **kinds: bool) -> str:
        trace_id = f"{self.rng.getrandbits(128):032x}"
        root = self.span(trace_id, start, root_ms, None, status="ERROR" if kinds.get("error_span") else "UNSET")
        self.span(trace_id, start + dt.timedelta(milliseconds=1), 5, root)
        self.span(trace_id, start + dt.timedelta(milliseconds=7), 5, root)
        self.log(trace_id, start + dt.timedelta(milliseconds=2), 17 if kinds.get("error_log") else 9)
        self.log(trace_id, start + dt.timedelta(milliseconds=8))
        if kinds.get("hallucination"):
            hallucination = {"gen_ai.evaluation.name": "hallucination", "gen_ai.evaluation.score.label": "hallucinated"}
            self.log(trace_id, start + dt.timedelta(milliseconds=9), 9, **hallucination)
        if kinds.get("feedback"):
            feedback: dict[str, object] = {
                "gen_ai.evaluation.name": "user_feedback",
                "gen_ai.evaluation.score.value": 0.0,  # a rating of 1 on 1..5
                "gen_ai.evaluation.score.label": "fail",
            }
            self.log(trace_id, start + dt.timedelta(milliseconds=10), 9, **feedback)
        return trace_id


def seed(dsn: str, today: dt.date, days: int = 40, plain: int = 40, seed_value: int = 7) -> Seeded:
    """Write `days` days (today and before) into the store at `dsn` (an owner or admin role)."""
    rng = random.Random(seed_value)
    seeded = Seeded()
    writer = _Writer(rng, seeded)
    for age in range(days):
        day = today - dt.timedelta(days=age)
        noon = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
        for number in range(plain):
            writer.trace(noon + dt.timedelta(seconds=number), 100 + number)
        for kind in ("error_span", "error_log", "hallucination", "feedback"):
            seeded.interesting[day].add(writer.trace(noon + dt.timedelta(minutes=5), 50, **{kind: True}))
        seeded.interesting[day].add(writer.trace(noon + dt.timedelta(minutes=6), 99_999))  # slow root
        # a trace across midnight into this day from the day before: its error is after midnight
        late = dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC) - dt.timedelta(seconds=1)
        crossing = f"{rng.getrandbits(128):032x}"
        root = writer.span(crossing, late, 3000, None)
        writer.span(crossing, late + dt.timedelta(seconds=2), 10, root, status="ERROR")
        seeded.interesting[day].add(crossing)
        seeded.interesting[day - dt.timedelta(days=1)].add(crossing)
        writer.log(None, noon, 17)  # outside any trace
        for number in range(10):
            writer.log(None, noon + dt.timedelta(seconds=number))
    _insert(dsn, seeded, today - dt.timedelta(days=days + 1), today + dt.timedelta(days=1))
    return seeded


def expected_warm(seeded: Seeded, day: dt.date, ratio: float) -> tuple[set[str], int]:
    """(trace ids the warm set of `day` keeps, trace-less log lines it keeps), computed without our SQL."""
    roots = [row["duration_ms"] for row in seeded.spans[day] if row["parent_span_id"] is None]
    p95 = statistics.quantiles(roots, n=100, method="inclusive")[94]  # what percentile_cont(0.95) gives
    slow = {row["trace_id"] for row in seeded.spans[day] if row["parent_span_id"] is None and row["duration_ms"] > p95}
    keep = {t for t in seeded.traces(day) if t in seeded.interesting[day] or t in slow or sampled(ratio, t)}
    kept_lines = sum(
        1
        for row in seeded.logs[day]
        if row["trace_id"] is None and (row["severity_number"] >= 17 or sampled(ratio, row["record_id"].hex))
    )
    return keep, kept_lines


def _insert(dsn: str, seeded: Seeded, first: dt.date, last: dt.date) -> None:
    from psycopg.types.json import Jsonb

    with psycopg.connect(dsn, autocommit=True) as connection:
        ensure_partitions(connection, "otel_rag", first, last)
        with connection.transaction(), connection.cursor() as cursor:
            span_columns = list(next(iter(seeded.spans.values()))[0])
            log_columns = list(next(iter(seeded.logs.values()))[0])
            for table, columns, rows_by_day in (
                ("spans", span_columns, seeded.spans),
                ("logs", log_columns, seeded.logs),
            ):
                with cursor.copy(f"COPY otel_rag.{table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for rows in rows_by_day.values():
                        for row in rows:
                            copy.write_row([Jsonb(row[c]) if c == "attributes" else row[c] for c in columns])
