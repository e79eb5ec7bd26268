"""Should I increase chunk size? Requests grouped by a span attribute (or by time), compared with confidence.

A request is a trace. It belongs to the group of the value its spans carry for the attribute (`rag.chunk.size`,
`gen_ai.request.model`, ... ; `service.version` and other resource attributes too; a trace with several values goes
to the smallest); or, comparing over time, to "before" or "after". Per request: its latency (the root span's
duration, or with `stage` each span of that RAG stage), cost, tokens, whether it failed, and its answers checked for
hallucination. Per group: n, p50 and p95 latency, mean cost and tokens, error rate and hallucination rate. Each group
is compared with the baseline (the largest group, or "before") by a percentile bootstrap of the difference:
BOOTSTRAP_ROUNDS resamples of at most SAMPLE_CAP requests per group, seeded, so the same store gives the same answer.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

__all__ = [
    "BOOTSTRAP_ROUNDS",
    "MIN_REQUESTS",
    "Comparison",
    "Group",
    "Request",
    "compare_groups",
    "compare_sql",
    "load_requests",
]

BOOTSTRAP_ROUNDS = 400
SAMPLE_CAP = 4000
MIN_REQUESTS = 30  # per group, below which the verdict is "not enough data"
_SEED = 20261130


@dataclass
class Request:
    group: str
    latency_ms: list[float]  # the root span, or each span of the stage
    cost_usd: float
    tokens: int
    failed: bool
    answers: int
    hallucinated: int


@dataclass
class Group:
    name: str
    n: int
    p50_ms: float | None
    p95_ms: float | None
    cost_per_request: float
    tokens_per_request: float
    error_rate: float
    hallucination_rate: float | None


@dataclass
class Difference:
    """One figure of a group against the baseline: the change and its 95 % interval (None: not enough data)."""

    metric: str
    change: float | None
    low: float | None
    high: float | None
    relative: bool  # a change in percent of the baseline (latency, cost) or in points (rates)


@dataclass
class Comparison:
    group: str
    baseline: str
    enough_data: bool
    differences: list[Difference] = field(default_factory=list)


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between the nearest ranks (what percentile_cont does)."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _metrics() -> dict[str, tuple[Callable[[list[Request]], float | None], bool]]:
    """Each figure computed from a list of requests, and whether its change is relative (%) or in points."""

    def latencies(requests: list[Request]) -> list[float]:
        return [value for request in requests for value in request.latency_ms]

    def rate(requests: list[Request], part: Callable[[Request], int], whole: Callable[[Request], int]) -> float | None:
        total = sum(whole(r) for r in requests)
        return sum(part(r) for r in requests) / total if total else None

    return {
        "p50 latency": (lambda rs: _percentile(latencies(rs), 0.5), True),
        "p95 latency": (lambda rs: _percentile(latencies(rs), 0.95), True),
        "cost per request": (lambda rs: sum(r.cost_usd for r in rs) / len(rs) if rs else None, True),
        "tokens per request": (lambda rs: sum(r.tokens for r in rs) / len(rs) if rs else None, True),
        "error rate": (lambda rs: rate(rs, lambda r: int(r.failed), lambda r: 1), False),
        "hallucination rate": (lambda rs: rate(rs, lambda r: r.hallucinated, lambda r: r.answers), False),
    }


def _change(baseline: float | None, value: float | None, relative: bool) -> float | None:
    if baseline is None or value is None:
        return None
    if relative:
        return (value - baseline) / baseline if baseline else None
    return value - baseline


def _group(name: str, requests: list[Request]) -> Group:
    figures = {metric: function(requests) for metric, (function, _relative) in _metrics().items()}
    return Group(
        name=name,
        n=len(requests),
        p50_ms=figures["p50 latency"],
        p95_ms=figures["p95 latency"],
        cost_per_request=figures["cost per request"] or 0.0,
        tokens_per_request=figures["tokens per request"] or 0.0,
        error_rate=figures["error rate"] or 0.0,
        hallucination_rate=figures["hallucination rate"],
    )


def compare_groups(
    requests: list[Request], baseline: str | None = None, rounds: int = BOOTSTRAP_ROUNDS
) -> tuple[list[Group], list[Comparison]]:
    """The groups' figures, and each group against the baseline (default: the largest group)."""
    by_group: dict[str, list[Request]] = {}
    for request in requests:
        by_group.setdefault(request.group, []).append(request)
    groups = [_group(name, members) for name, members in sorted(by_group.items(), key=lambda item: _sort_key(item[0]))]
    if not groups:
        return [], []
    base = baseline if baseline in by_group else max(groups, key=lambda g: g.n).name
    rng = random.Random(_SEED)  # noqa: S311 - resampling for statistics, not secrets; seeded to be repeatable
    metrics = _metrics()
    comparisons = []
    for name, members in sorted(by_group.items(), key=lambda item: _sort_key(item[0])):
        if name == base:
            continue
        reference = by_group[base]
        enough = len(members) >= MIN_REQUESTS and len(reference) >= MIN_REQUESTS
        comparison = Comparison(name, base, enough)
        sample_a = _cap(reference, rng)
        sample_b = _cap(members, rng)
        for metric, (function, relative) in metrics.items():
            change = _change(function(reference), function(members), relative)
            low = high = None
            if enough and change is not None:
                low, high = _interval(sample_a, sample_b, function, relative=relative, rounds=rounds, rng=rng)
            comparison.differences.append(Difference(metric, change, low, high, relative))
        comparisons.append(comparison)
    return groups, comparisons


def _sort_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)  # numbers in numeric order: chunk size 60 before 120
    except ValueError:
        return (1, 0.0, name)


def _cap(requests: list[Request], rng: random.Random) -> list[Request]:
    return requests if len(requests) <= SAMPLE_CAP else rng.sample(requests, SAMPLE_CAP)


def _interval(
    reference: list[Request],
    members: list[Request],
    function: Callable[[list[Request]], float | None],
    *,
    relative: bool,
    rounds: int,
    rng: random.Random,
) -> tuple[float | None, float | None]:
    """The 2.5th and 97.5th percentiles of the change over bootstrap resamples of both groups."""
    changes = []
    for _ in range(rounds):
        a = rng.choices(reference, k=len(reference))
        b = rng.choices(members, k=len(members))
        change = _change(function(a), function(b), relative)
        if change is not None:
            changes.append(change)
    if len(changes) < rounds // 2:
        return None, None
    return _percentile(changes, 0.025), _percentile(changes, 0.975)


def compare_sql(schema: str, *, resource: bool, stage: bool, by_time: bool) -> sql.Composed:
    """One row per request of the window (the tests EXPLAIN it). Parameters: start, end, attribute, stage, and
    with `by_time` before and after (a request starting before `before` is "before", from `after` on "after")."""
    spans, logs = sql.Identifier(schema, "spans"), sql.Identifier(schema, "logs")
    source = sql.SQL("resource") if resource else sql.SQL("attributes")
    if by_time:  # a request counts before or after by its first span; one in between counts in neither
        traces = sql.SQL(
            "SELECT trace_id, CASE WHEN min(time) < %(before)s THEN 'before' WHEN min(time) >= %(after)s"
            " THEN 'after' END AS value FROM {spans} WHERE time >= %(start)s AND time < %(end)s GROUP BY trace_id"
        ).format(spans=spans)
    else:
        traces = sql.SQL(
            "SELECT trace_id, min({source}->>%(attribute)s) AS value FROM {spans}"
            " WHERE time >= %(start)s AND time < %(end)s AND {source} ? %(attribute)s GROUP BY trace_id"
        ).format(spans=spans, source=source)
    latency = (
        sql.SQL("AND attributes->>'rag.stage' = %(stage)s")
        if stage
        else sql.SQL("AND (parent_span_id IS NULL OR parent_remote) AND kind = 'SERVER'")
    )
    return sql.SQL(
        "SELECT t.value AS grp, f.latencies, f.cost, f.tokens, f.failed, coalesce(e.answers, 0) AS answers,"
        " coalesce(e.hallucinated, 0) AS hallucinated"
        " FROM ({traces}) t"
        " CROSS JOIN LATERAL (SELECT array_agg(duration_ms) FILTER (WHERE true {latency}) AS latencies,"
        "   coalesce(sum(cost_usd), 0) AS cost, coalesce(sum(input_tokens), 0) + coalesce(sum(output_tokens), 0)"
        "   AS tokens, bool_or(status = 'ERROR') AS failed"
        "   FROM {spans} WHERE trace_id = t.trace_id AND time >= %(start)s - interval '1 hour'"
        "   AND time < %(end)s + interval '1 hour') f"
        " LEFT JOIN LATERAL (SELECT count(*) AS answers, count(*) FILTER"
        "   (WHERE attributes->>'gen_ai.evaluation.score.label' = 'hallucinated') AS hallucinated FROM {logs}"
        "   WHERE trace_id = t.trace_id AND time >= %(start)s - interval '1 hour' AND time < %(end)s + interval '1 day'"
        "   AND attributes->>'gen_ai.evaluation.name' = 'hallucination') e ON true"
    ).format(traces=traces, latency=latency, spans=spans, logs=logs)


_RESOURCE_PREFIXES = ("service.", "deployment.", "host.", "k8s.", "cloud.", "telemetry.")


def load_requests(
    connection: psycopg.Connection[Any],
    schema: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    attribute: str | None = None,
    before: dt.datetime | None = None,
    after: dt.datetime | None = None,
    stage: str | None = None,
) -> list[Request]:
    """The window's requests with their figures, grouped by `attribute`, or by time: "before" (starting before
    `before`) and "after" (starting at `after` or later)."""
    by_time = before is not None or after is not None
    resource = attribute is not None and attribute.startswith(_RESOURCE_PREFIXES)
    query = compare_sql(schema, resource=resource, stage=stage is not None, by_time=by_time)
    params = {
        "start": start,
        "end": end,
        "attribute": attribute,
        "stage": stage,
        "before": before or after,
        "after": after or before,
    }
    with connection.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(query, params).fetchall()
    return [
        Request(
            group=str(row["grp"]),
            latency_ms=[float(value) for value in row["latencies"] or []],
            cost_usd=float(row["cost"]),
            tokens=int(row["tokens"]),
            failed=bool(row["failed"]),
            answers=int(row["answers"]),
            hallucinated=int(row["hallucinated"]),
        )
        for row in rows
        if row["grp"] is not None
    ]
