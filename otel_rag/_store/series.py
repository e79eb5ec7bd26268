"""The debug page's pictures over time: requests, errors and p95 per bucket, cost per bucket by model, and the
answers judged hallucinated (the traces behind a point of the quality chart).

Requests are the root server spans, as in `otel-rag health` (the partial index `spans_roots_time` serves the range);
cost is the spans' `cost_usd` by `gen_ai.request.model`. Every query is parameterised and reads only the window's
partitions; the tests EXPLAIN them.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from otel_rag._store.windows import ROOTS_IN_WINDOW, bucket_starts, service_filter

__all__ = ["Answer", "Point", "Series", "answers_sql", "auto_bucket", "judged_answers", "series", "series_sql"]

# Bucket sizes a chart steps through, in seconds: the smallest giving at most MAX_POINTS points is chosen.
_SIZES = (10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400)
MAX_POINTS = 120


@dataclass
class Point:
    start: dt.datetime
    requests: int = 0
    errors: int = 0
    p95_ms: float | None = None
    cost_usd: dict[str, float] = field(default_factory=dict)  # by model


@dataclass
class Series:
    start: dt.datetime
    end: dt.datetime
    bucket_seconds: int
    points: list[Point]

    def to_document(self) -> dict[str, Any]:
        """JSON-ready, with the models seen (the cost chart's series) in a stable order."""
        models = sorted({model for point in self.points for model in point.cost_usd})
        return {
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "bucket_seconds": self.bucket_seconds,
            "models": models,
            "points": [
                {
                    "start": p.start.isoformat(),
                    "requests": p.requests,
                    "errors": p.errors,
                    "p95_ms": p.p95_ms,
                    "cost_usd": p.cost_usd,
                }
                for p in self.points
            ],
        }


@dataclass
class Answer:
    time: dt.datetime
    trace_id: str | None
    user_id: str | None
    service: str
    label: str | None
    score: float | None
    explanation: str | None


def auto_bucket(start: dt.datetime, end: dt.datetime) -> dt.timedelta:
    """The smallest of the usual sizes (10 s ... 1 d) that draws the window in at most MAX_POINTS points."""
    seconds = (end - start).total_seconds()
    for size in _SIZES:
        if seconds / size <= MAX_POINTS:
            return dt.timedelta(seconds=size)
    return dt.timedelta(seconds=math.ceil(seconds / MAX_POINTS))


def series_sql(schema: str, service: bool = False) -> dict[str, sql.Composed]:
    """The queries, by name. Parameters: start, end, bucket (an interval), service."""
    spans = sql.Identifier(schema, "spans")
    only = service_filter(service)
    return {
        "requests": sql.SQL(
            "SELECT date_bin(%(bucket)s, time, %(start)s) AS bucket, count(*) AS requests,"
            " count(*) FILTER (WHERE status = 'ERROR') AS errors,"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms"
            " FROM {spans} WHERE {roots}{only} GROUP BY 1 ORDER BY 1"
        ).format(spans=spans, roots=ROOTS_IN_WINDOW, only=only),
        "cost": sql.SQL(
            "SELECT date_bin(%(bucket)s, time, %(start)s) AS bucket,"
            " coalesce(attributes->>'gen_ai.request.model', 'unknown') AS model, sum(cost_usd) AS cost_usd"
            " FROM {spans} WHERE time >= %(start)s AND time < %(end)s AND cost_usd IS NOT NULL{only}"
            " GROUP BY 1, 2 ORDER BY 1, 2"
        ).format(spans=spans, only=only),
    }


def series(
    connection: psycopg.Connection[Any],
    schema: str,
    start: dt.datetime,
    end: dt.datetime,
    bucket: dt.timedelta,
    *,
    service: str | None = None,
) -> Series:
    """Every bucket of [start, end), empty ones included (a gap in traffic shows as zero, not as a missing point)."""
    queries = series_sql(schema, service is not None)
    params: dict[str, Any] = {"start": start, "end": end, "bucket": bucket, "service": service}
    points = {at: Point(at) for at in bucket_starts(start, end, bucket)}
    with connection.cursor(row_factory=dict_row) as cursor:
        for row in cursor.execute(queries["requests"], params).fetchall():
            point = points.setdefault(row["bucket"], Point(row["bucket"]))
            point.requests, point.errors = int(row["requests"]), int(row["errors"])
            point.p95_ms = float(row["p95_ms"]) if row["p95_ms"] is not None else None
        for row in cursor.execute(queries["cost"], params).fetchall():
            points.setdefault(row["bucket"], Point(row["bucket"])).cost_usd[row["model"]] = float(row["cost_usd"])
    return Series(start, end, int(bucket.total_seconds()), [points[key] for key in sorted(points)])


def answers_sql(schema: str) -> sql.Composed:
    """Evaluated answers of a window with one label, newest first. Parameters: start, end, label, limit."""
    return sql.SQL(
        "SELECT time, trace_id, user_id, service_name AS service,"
        " attributes->>'gen_ai.evaluation.score.label' AS label,"
        " CASE WHEN jsonb_typeof(attributes->'gen_ai.evaluation.score.value') = 'number'"
        " THEN (attributes->>'gen_ai.evaluation.score.value')::float8 END AS score,"
        " attributes->>'gen_ai.evaluation.explanation' AS explanation"
        " FROM {logs} WHERE time >= %(start)s AND time < %(end)s"
        " AND attributes->>'gen_ai.evaluation.name' = 'hallucination'"
        " AND attributes->>'gen_ai.evaluation.score.label' = %(label)s"
        " ORDER BY time DESC LIMIT %(limit)s"
    ).format(logs=sql.Identifier(schema, "logs"))


def judged_answers(
    connection: psycopg.Connection[Any],
    schema: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    label: str = "hallucinated",
    limit: int = 50,
) -> list[Answer]:
    """The answers of [start, end) the hallucination evaluation labelled `label`, newest first."""
    params = {"start": start, "end": end, "label": label, "limit": limit}
    with connection.cursor(row_factory=dict_row) as cursor:
        return [Answer(**row) for row in cursor.execute(answers_sql(schema), params).fetchall()]
