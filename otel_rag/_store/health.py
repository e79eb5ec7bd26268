"""Is the system healthy? The store's side of the answer, for one time window (default: the last 15 minutes).

Requests are the root server spans (no parent, or a remote one: the partial index `spans_roots_time` serves the
range), their errors the roots with status ERROR, latency their duration per route (p95), answers and
hallucinations the `gen_ai.evaluation.result` log lines of the evaluation `hallucination`, cost the sum of the spans'
`cost_usd`, and freshness the age of the newest row the pipeline wrote. Every query is parameterised and reads
only the window's partitions. `judge` turns those figures (and Prometheus's view of the pipeline, when asked) into
healthy, degraded or down with the alert rules' thresholds, for `otel-rag health` and the debug page alike.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from otel_rag._store.windows import ROOTS_IN_WINDOW, service_filter

__all__ = [
    "DEGRADED",
    "DOWN",
    "HEALTHY",
    "Pipeline",
    "RouteLatency",
    "StoreHealth",
    "Verdict",
    "duration_text",
    "health_document",
    "health_sql",
    "judge",
    "store_health",
]


@dataclass
class RouteLatency:
    service: str
    route: str
    requests: int
    p95_ms: float


@dataclass
class StoreHealth:
    start: dt.datetime
    end: dt.datetime
    requests: int
    errors: int
    routes: list[RouteLatency] = field(default_factory=list)
    answers: int = 0
    hallucinations: int = 0
    cost_usd: float = 0.0
    newest_row: dt.datetime | None = None

    @property
    def minutes(self) -> float:
        return max((self.end - self.start).total_seconds() / 60, 1e-9)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def hallucination_rate(self) -> float | None:
        return self.hallucinations / self.answers if self.answers else None

    @property
    def cost_per_hour(self) -> float:
        return self.cost_usd * 60 / self.minutes

    def freshness_s(self, now: dt.datetime) -> float | None:
        """Seconds since the newest row was written (None: no row in the last day)."""
        return (now - self.newest_row).total_seconds() if self.newest_row else None


def health_sql(schema: str, service: bool = False) -> dict[str, sql.Composed]:
    """The health queries, by name (the tests EXPLAIN them to check index use). Parameters: start, end, service,
    since (the newest-row queries: the newest row at or before the window's end, so rows stamped in the future by a
    skewed clock do not hide a silent pipeline)."""
    spans, logs = sql.Identifier(schema, "spans"), sql.Identifier(schema, "logs")
    only = service_filter(service)
    return {
        "requests": sql.SQL(
            "SELECT count(*) AS requests, count(*) FILTER (WHERE status = 'ERROR') AS errors"
            " FROM {spans} WHERE {roots}{only}"
        ).format(spans=spans, roots=ROOTS_IN_WINDOW, only=only),
        "routes": sql.SQL(
            "SELECT service_name AS service, coalesce(attributes->>'http.route', name) AS route,"
            " count(*) AS requests, percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms"
            " FROM {spans} WHERE {roots}{only} GROUP BY 1, 2 ORDER BY 4 DESC LIMIT 20"
        ).format(spans=spans, roots=ROOTS_IN_WINDOW, only=only),
        "answers": sql.SQL(
            "SELECT count(*) AS answers,"
            " count(*) FILTER (WHERE attributes->>'gen_ai.evaluation.score.label' = 'hallucinated') AS bad"
            " FROM {logs} WHERE time >= %(start)s AND time < %(end)s"
            " AND attributes->>'gen_ai.evaluation.name' = 'hallucination'{only}"
        ).format(logs=logs, only=only),
        "cost": sql.SQL(
            "SELECT coalesce(sum(cost_usd), 0) AS cost FROM {spans} WHERE time >= %(start)s AND time < %(end)s"
            " AND cost_usd IS NOT NULL{only}"
        ).format(spans=spans, only=only),
        "newest": sql.SQL(
            "SELECT greatest((SELECT max(time) FROM {spans} WHERE time >= %(since)s AND time < %(end)s{only}),"
            " (SELECT max(time) FROM {logs} WHERE time >= %(since)s AND time < %(end)s{only})) AS newest"
        ).format(spans=spans, logs=logs, only=only),
    }


def store_health(
    connection: psycopg.Connection[Any],
    schema: str,
    start: dt.datetime,
    end: dt.datetime,
    service: str | None = None,
) -> StoreHealth:
    """The window's figures from the store (the reader role is enough)."""
    queries = health_sql(schema, service is not None)
    params: dict[str, Any] = {"start": start, "end": end, "service": service}
    with connection.cursor(row_factory=dict_row) as cursor:
        totals = cursor.execute(queries["requests"], params).fetchone()
        routes = cursor.execute(queries["routes"], params).fetchall()
        answers = cursor.execute(queries["answers"], params).fetchone()
        cost = cursor.execute(queries["cost"], params).fetchone()
        newest = None
        for since in (start, end - dt.timedelta(days=1)):  # the window first (cheap); a day back when it is empty
            row = cursor.execute(queries["newest"], params | {"since": since}).fetchone()
            newest = row["newest"] if row else None
            if newest is not None:
                break
    assert totals and answers and cost
    return StoreHealth(
        start=start,
        end=end,
        requests=int(totals["requests"]),
        errors=int(totals["errors"]),
        routes=[RouteLatency(r["service"], r["route"], int(r["requests"]), float(r["p95_ms"])) for r in routes],
        answers=int(answers["answers"]),
        hallucinations=int(answers["bad"]),
        cost_usd=float(cost["cost"]),
        newest_row=newest,
    )


HEALTHY, DEGRADED, DOWN = 0, 1, 2
_NAMES = {HEALTHY: "HEALTHY", DEGRADED: "DEGRADED", DOWN: "DOWN"}


@dataclass
class Pipeline:
    """What Prometheus says about the pipeline (None: not asked, or it could not be reached: `error`)."""

    figures: dict[str, float] = field(default_factory=dict)
    alerts: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None


@dataclass
class Verdict:
    status: int
    reasons: list[str]

    @property
    def name(self) -> str:
        return _NAMES[self.status]


def judge(store: StoreHealth, pipeline: Pipeline | None, now: dt.datetime) -> Verdict:
    """The status and why, from the window's figures (the thresholds of the alert rules)."""
    down: list[str] = []
    degraded: list[str] = []
    rate = store.error_rate
    if rate is not None and store.requests >= 10 and rate >= 0.5:
        down.append(f"errors {rate:.0%} of {store.requests} requests")
    elif rate is not None and store.requests >= 20 and rate > 0.05:
        degraded.append(f"errors {rate:.1%} of {store.requests} requests (over 5 %)")
    degraded += [
        f"p95 of {r.route} ({r.service}) {r.p95_ms / 1000:.1f} s (over 2 s)" for r in store.routes if r.p95_ms > 2000
    ]
    hallucinations = store.hallucination_rate
    if hallucinations is not None and store.answers >= 10 and hallucinations > 0.10:
        degraded.append(f"hallucinations {hallucinations:.1%} of {store.answers} answers (over 10 %)")
    age = store.freshness_s(now)
    if age is None:
        down.append("no telemetry in the store for a day")
    elif store.newest_row is not None and store.newest_row < store.start:
        degraded.append(f"no telemetry in the window (newest row {duration_text(age)} ago)")
    if pipeline is not None:
        if pipeline.error:
            degraded.append(f"Prometheus not answering: {pipeline.error}")
        for name, text in (
            ("spooled_bytes", "bytes waiting in the sinks' spools"),
            ("dropped", "records dropped"),
            ("langsmith_failed", "LangSmith runs failed"),
        ):
            if pipeline.figures.get(name, 0) > 0:
                degraded.append(f"{pipeline.figures[name]:.0f} {text}")
        for alert in pipeline.alerts:
            (down if alert.get("severity") == "page" else degraded).append(f"alert {alert['name']} firing")
    if down:
        return Verdict(DOWN, down + degraded)
    return Verdict(DEGRADED if degraded else HEALTHY, degraded)


def duration_text(seconds: float) -> str:
    """`42 s`, `12 min`, `3.5 h`."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def health_document(
    store: StoreHealth, pipeline: Pipeline | None, verdict: Verdict, now: dt.datetime
) -> dict[str, Any]:
    """JSON-ready (`otel-rag health --json`, the debug page's health strip)."""
    return {
        "status": verdict.name,
        "reasons": verdict.reasons,
        "window": {"start": store.start.isoformat(), "end": store.end.isoformat()},
        "requests": store.requests,
        "requests_per_minute": store.requests / store.minutes,
        "errors": store.errors,
        "error_rate": store.error_rate,
        "routes": [vars(route) for route in store.routes],
        "answers": store.answers,
        "hallucinations": store.hallucinations,
        "hallucination_rate": store.hallucination_rate,
        "cost_per_hour_usd": store.cost_per_hour,
        "freshness_s": store.freshness_s(now),
        "pipeline": None if pipeline is None else vars(pipeline),
    }
