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
from collections.abc import Sequence
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
    "to_document",
    "verdict",
]

BOOTSTRAP_ROUNDS = 200
SAMPLE_CAP = 3000
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
    latency_quantiles_ms: list[float] = field(default_factory=list)  # at 0, 5, ..., 100 %: the distribution


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
    return _percentile_sorted(sorted(values), fraction)


# Each figure, and whether its change is relative (in % of the baseline) or in points (rates).
METRICS = {
    "p50 latency": True,
    "p95 latency": True,
    "cost per request": True,
    "tokens per request": True,
    "error rate": False,
    "hallucination rate": False,
}


class _Columns:
    """One group's requests as columns, so that a resample is a list of row numbers and every figure is computed
    from it with C-speed map and sum (a bootstrap of thousands of requests stays well under a second)."""

    def __init__(self, requests: list[Request]) -> None:
        self.n = len(requests)
        self.latencies = [r.latency_ms for r in requests]
        self.single = all(len(values) == 1 for values in self.latencies)
        self.flat = [values[0] for values in self.latencies] if self.single else []
        self.cost = [r.cost_usd for r in requests]
        self.tokens = [r.tokens for r in requests]
        self.failed = [int(r.failed) for r in requests]
        self.answers = [r.answers for r in requests]
        self.hallucinated = [r.hallucinated for r in requests]

    def all_latencies(self) -> list[float]:
        """Every latency of the group (each request's, or each span's of the stage)."""
        return self.flat if self.single else [value for values in self.latencies for value in values]

    def figures(self, rows: Sequence[int]) -> dict[str, float | None]:
        if self.single:
            latencies = sorted(map(self.flat.__getitem__, rows))
        else:
            latencies = sorted(value for row in rows for value in self.latencies[row])
        count = len(rows)
        answers = sum(map(self.answers.__getitem__, rows))
        return {
            "p50 latency": _percentile_sorted(latencies, 0.5),
            "p95 latency": _percentile_sorted(latencies, 0.95),
            "cost per request": sum(map(self.cost.__getitem__, rows)) / count if count else None,
            "tokens per request": sum(map(self.tokens.__getitem__, rows)) / count if count else None,
            "error rate": sum(map(self.failed.__getitem__, rows)) / count if count else None,
            "hallucination rate": sum(map(self.hallucinated.__getitem__, rows)) / answers if answers else None,
        }


def _percentile_sorted(ordered: Sequence[float], fraction: float) -> float | None:
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _change(baseline: float | None, value: float | None, relative: bool) -> float | None:
    if baseline is None or value is None:
        return None
    if relative:
        return (value - baseline) / baseline if baseline else None
    return value - baseline


def _group(name: str, figures: dict[str, float | None], columns: _Columns) -> Group:
    latencies = sorted(columns.all_latencies())
    quantiles = [_percentile_sorted(latencies, step / 20) for step in range(21)] if latencies else []
    n = columns.n
    return Group(
        name=name,
        n=n,
        p50_ms=figures["p50 latency"],
        p95_ms=figures["p95 latency"],
        cost_per_request=figures["cost per request"] or 0.0,
        tokens_per_request=figures["tokens per request"] or 0.0,
        error_rate=figures["error rate"] or 0.0,
        hallucination_rate=figures["hallucination rate"],
        latency_quantiles_ms=[value for value in quantiles if value is not None],
    )


def compare_groups(
    requests: list[Request], baseline: str | None = None, rounds: int = BOOTSTRAP_ROUNDS
) -> tuple[list[Group], list[Comparison]]:
    """The groups' figures, and each group against the baseline (default: the largest group)."""
    by_group: dict[str, list[Request]] = {}
    for request in requests:
        by_group.setdefault(request.group, []).append(request)
    names = sorted(by_group, key=_sort_key)
    columns = {name: _Columns(by_group[name]) for name in names}
    figures = {name: columns[name].figures(range(columns[name].n)) for name in names}
    groups = [_group(name, figures[name], columns[name]) for name in names]
    if not groups:
        return [], []
    base = baseline if baseline in by_group else max(groups, key=lambda g: g.n).name
    rng = random.Random(_SEED)  # noqa: S311 - resampling for statistics, not secrets; seeded to be repeatable
    comparisons = []
    for name in names:
        if name == base:
            continue
        enough = columns[name].n >= MIN_REQUESTS and columns[base].n >= MIN_REQUESTS
        comparison = Comparison(name, base, enough)
        intervals = _intervals(columns[base], columns[name], rounds, rng) if enough else {}
        for metric, relative in METRICS.items():
            change = _change(figures[base][metric], figures[name][metric], relative)
            low, high = intervals.get(metric, (None, None)) if change is not None else (None, None)
            comparison.differences.append(Difference(metric, change, low, high, relative))
        comparisons.append(comparison)
    return groups, comparisons


def to_document(groups: list[Group], comparisons: list[Comparison], label: str) -> dict[str, Any]:
    """The groups and comparisons as JSON-ready data, each comparison with its verdict line (`otel-rag compare
    --json`, the debug page: both say what the terminal says)."""
    return {
        "by": label,
        "groups": [vars(group) for group in groups],
        "comparisons": [
            {
                "group": c.group,
                "baseline": c.baseline,
                "enough_data": c.enough_data,
                "differences": [vars(d) for d in c.differences],
                "verdict": verdict(label, c),
            }
            for c in comparisons
        ],
    }


_SHORT = {
    "p50 latency": "p50",
    "p95 latency": "p95",
    "cost per request": "cost",
    "tokens per request": "tokens",
    "error rate": "errors",
    "hallucination rate": "hallucination",
}


def _difference(difference: Difference) -> str:
    name = _SHORT[difference.metric]
    if difference.change is None:
        return f"{name} -"
    if difference.relative:
        text = f"{name} {difference.change:+.0%}"
        interval = (
            f" [{difference.low:+.0%}, {difference.high:+.0%}]"
            if difference.low is not None and difference.high is not None
            else ""
        )
    else:
        text = f"{name} {difference.change * 100:+.1f} pts"
        interval = (
            f" [{difference.low * 100:+.1f}, {difference.high * 100:+.1f}]"
            if difference.low is not None and difference.high is not None
            else ""
        )
    return text + interval


def verdict(label: str, comparison: Comparison) -> str:
    """One line: "chunk 120 vs 60: p95 +18 % [9 %, 27 %], hallucination -3.1 pts [-5.0, -1.2], cost +22 % ..."."""
    head = f"{label} {comparison.group} vs {comparison.baseline}"
    if not comparison.enough_data:
        return f"{head}: not enough data (fewer than 30 requests in a group)"
    wanted = ("p95 latency", "hallucination rate", "cost per request", "error rate")
    parts = [_difference(d) for d in comparison.differences if d.metric in wanted and d.change is not None]
    return f"{head}: " + ", ".join(parts)


def _sort_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)  # numbers in numeric order: chunk size 60 before 120
    except ValueError:
        return (1, 0.0, name)


def _rows(columns: _Columns, rng: random.Random) -> list[int]:
    """A resample with replacement of (at most SAMPLE_CAP of) the group's requests: 32 random bits per row
    reduced modulo n (a bias under n / 2^32, i.e. none that shows) is six times faster than random.choices."""
    n = columns.n
    bits = memoryview(rng.randbytes(4 * min(n, SAMPLE_CAP))).cast("I")
    return [value % n for value in bits]


def _intervals(
    reference: _Columns, members: _Columns, rounds: int, rng: random.Random
) -> dict[str, tuple[float | None, float | None]]:
    """Per figure, the 2.5th and 97.5th percentiles of its change over bootstrap resamples of both groups."""
    changes: dict[str, list[float]] = {metric: [] for metric in METRICS}
    for _ in range(rounds):
        a, b = reference.figures(_rows(reference, rng)), members.figures(_rows(members, rng))
        for metric, relative in METRICS.items():
            change = _change(a[metric], b[metric], relative)
            if change is not None:
                changes[metric].append(change)
    intervals: dict[str, tuple[float | None, float | None]] = {}
    for metric, values in changes.items():
        values.sort()
        if len(values) >= rounds // 2:
            intervals[metric] = (_percentile_sorted(values, 0.025), _percentile_sorted(values, 0.975))
    return intervals


def compare_sql(schema: str, *, resource: bool, stage: bool, by_time: bool) -> sql.Composed:
    """One row per request of the window (the tests EXPLAIN it): one pass over the window's spans grouped by trace,
    one over its evaluations. Parameters: start, end, attribute, stage, and with `by_time` before and after (a
    request starting before `before` is "before", from `after` on "after"; one in between is in neither)."""
    spans, logs = sql.Identifier(schema, "spans"), sql.Identifier(schema, "logs")
    source = sql.SQL("resource") if resource else sql.SQL("attributes")
    group: sql.Composable
    if by_time:
        group = sql.SQL("CASE WHEN min(time) < %(before)s THEN 'before' WHEN min(time) >= %(after)s THEN 'after' END")
    else:
        group = sql.SQL("min({source}->>%(attribute)s)").format(source=source)
    latency = (
        sql.SQL("attributes->>'rag.stage' = %(stage)s")
        if stage
        else sql.SQL("(parent_span_id IS NULL OR parent_remote) AND kind = 'SERVER'")
    )
    return sql.SQL(
        "WITH requests AS (SELECT trace_id, {group} AS grp,"
        " array_agg(duration_ms) FILTER (WHERE {latency}) AS latencies, coalesce(sum(cost_usd), 0) AS cost,"
        " coalesce(sum(input_tokens), 0) + coalesce(sum(output_tokens), 0) AS tokens,"
        " bool_or(status = 'ERROR') AS failed"
        " FROM {spans} WHERE time >= %(start)s AND time < %(end)s GROUP BY trace_id),"
        " evaluations AS (SELECT trace_id, count(*) AS answers,"
        " count(*) FILTER (WHERE attributes->>'gen_ai.evaluation.score.label' = 'hallucinated') AS hallucinated"
        " FROM {logs} WHERE time >= %(start)s AND time < %(end)s"
        " AND attributes->>'gen_ai.evaluation.name' = 'hallucination' GROUP BY trace_id)"
        " SELECT r.grp, r.latencies, r.cost, r.tokens, r.failed, coalesce(e.answers, 0) AS answers,"
        " coalesce(e.hallucinated, 0) AS hallucinated"
        " FROM requests r LEFT JOIN evaluations e ON e.trace_id = r.trace_id WHERE r.grp IS NOT NULL"
    ).format(group=group, latency=latency, spans=spans, logs=logs)


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
