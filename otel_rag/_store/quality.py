"""When did quality drop? Answer quality over time from the store, and the change point in the hallucination rate.

Evaluations are the `gen_ai.evaluation.result` log lines record_quality() writes (rag/_quality.py): per time bucket,
how many answers were checked for hallucination and how many were hallucinated, the mean score of every other
evaluation, and the mean user feedback. The drop is found by a change-point test on the hallucination counts: at
every bucket boundary with at least MIN_ANSWERS answers on each side, a two-proportion z-test of "after" against
"before"; the boundary with the largest rise is the candidate, and its p-value is multiplied by the number of
boundaries tried (Bonferroni), so testing many boundaries does not manufacture a drop. Reported when that corrected
p-value is below 0.05, with its confidence (1 - p). Then what changed at that time: the models, prompt sizes, chunk
sizes and deployed versions (`service.version`) whose share of the stages moved by CHANGE_SHARE or more across it.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from otel_rag._store.windows import bucket_starts, service_filter

__all__ = ["MIN_ANSWERS", "Bucket", "Change", "Drop", "QualityReport", "find_drop", "quality_report", "quality_sql"]

CHANGE_SHARE = 0.2  # of a side's spans: what changed at the drop is what moved at least this much
MIN_ANSWERS = 20  # on each side of a change point
_SIGNIFICANCE = 0.05


@dataclass
class Bucket:
    start: dt.datetime
    answers: int = 0  # answers checked for hallucination
    hallucinated: int = 0
    scores: dict[str, float] = field(default_factory=dict)  # evaluation name -> mean score
    feedback: float | None = None  # mean user_feedback score (0..1; a rating r of 1..5 is (r - 1) / 4)
    feedback_count: int = 0

    @property
    def hallucination_rate(self) -> float | None:
        return self.hallucinated / self.answers if self.answers else None


@dataclass
class Drop:
    at: dt.datetime
    before_rate: float
    after_rate: float
    before_answers: int
    after_answers: int
    p_value: float  # Bonferroni-corrected over the boundaries tried

    @property
    def confidence(self) -> float:
        return 1.0 - self.p_value


@dataclass
class Change:
    """One thing that differs before and after the drop: what was seen on each side, with counts."""

    what: str
    before: dict[str, int]
    after: dict[str, int]


@dataclass
class QualityReport:
    start: dt.datetime
    end: dt.datetime
    bucket_seconds: int
    buckets: list[Bucket]
    drop: Drop | None
    boundaries_tried: int
    changes: list[Change] = field(default_factory=list)

    def to_document(self) -> dict[str, Any]:
        """JSON-ready (`otel-rag quality --json`, the debug page's quality chart)."""
        drop = self.drop
        return {
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "bucket_seconds": self.bucket_seconds,
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
                for b in self.buckets
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
            "boundaries_tried": self.boundaries_tried,
            "changes": [vars(change) for change in self.changes],
        }


def _normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def find_drop(buckets: list[Bucket], min_answers: int = MIN_ANSWERS) -> tuple[Drop | None, int]:
    """The bucket boundary where the hallucination rate rose the most, if significantly; and how many boundaries
    had enough answers on both sides to be tried."""
    total_n = sum(b.answers for b in buckets)
    total_k = sum(b.hallucinated for b in buckets)
    best: tuple[float, int, int, int, int] | None = None  # z, boundary index, n and k before
    tried = 0
    n_before = k_before = 0
    for index in range(1, len(buckets)):
        n_before += buckets[index - 1].answers
        k_before += buckets[index - 1].hallucinated
        n_after, k_after = total_n - n_before, total_k - k_before
        if n_before < min_answers or n_after < min_answers:
            continue
        tried += 1
        pooled = total_k / total_n
        spread = math.sqrt(pooled * (1 - pooled) * (1 / n_before + 1 / n_after))
        if spread == 0:
            continue
        z = (k_after / n_after - k_before / n_before) / spread
        if best is None or z > best[0]:
            best = (z, index, n_before, k_before, tried)
    if best is None or best[0] <= 0:
        return None, tried
    z, index, n_b, k_b, _ = best
    p_value = min(1.0, _normal_sf(z) * tried)
    if p_value >= _SIGNIFICANCE:
        return None, tried
    n_a, k_a = total_n - n_b, total_k - k_b
    return Drop(buckets[index].start, k_b / n_b, k_a / n_a, n_b, n_a, p_value), tried


def quality_sql(schema: str, service: bool = False) -> dict[str, sql.Composed]:
    """The quality queries (the tests EXPLAIN them). Parameters: start, end, bucket (an interval), service, at."""
    logs, spans = sql.Identifier(schema, "logs"), sql.Identifier(schema, "spans")
    only = service_filter(service)
    return {
        "evaluations": sql.SQL(
            "SELECT date_bin(%(bucket)s, time, %(start)s) AS bucket, attributes->>'gen_ai.evaluation.name' AS name,"
            " count(*) AS n,"
            " count(*) FILTER (WHERE attributes->>'gen_ai.evaluation.score.label' = 'hallucinated') AS hallucinated,"
            " avg(CASE WHEN jsonb_typeof(attributes->'gen_ai.evaluation.score.value') = 'number'"
            " THEN (attributes->>'gen_ai.evaluation.score.value')::float8 END) AS score"
            " FROM {logs} WHERE time >= %(start)s AND time < %(end)s"
            " AND attributes ? 'gen_ai.evaluation.name'{only} GROUP BY 1, 2 ORDER BY 1, 2"
        ).format(logs=logs, only=only),
        # what the stages ran with, on each side of the change point
        "context": sql.SQL(
            "SELECT time >= %(at)s AS after, attributes->>'rag.stage' AS stage,"
            " attributes->>'gen_ai.request.model' AS model,"
            " attributes->>'rag.chunk.size' AS chunk_size, resource->>'service.version' AS version,"
            " CASE WHEN attributes->>'rag.stage' = 'generate'"
            " AND (attributes->>'gen_ai.usage.input_tokens') ~ '^[0-9]+$'"
            " THEN width_bucket((attributes->>'gen_ai.usage.input_tokens')::int, 0, 8192, 8) END AS prompt_band,"
            " count(*) AS n"
            " FROM {spans} WHERE time >= %(start)s AND time < %(end)s AND attributes ? 'rag.stage'{only}"
            " GROUP BY 1, 2, 3, 4, 5, 6"
        ).format(spans=spans, only=only),
    }


def quality_report(
    connection: psycopg.Connection[Any],
    schema: str,
    start: dt.datetime,
    end: dt.datetime,
    bucket: dt.timedelta,
    *,
    service: str | None = None,
    min_answers: int = MIN_ANSWERS,
) -> QualityReport:
    """Answer quality per bucket of [start, end), the drop if one is significant, and what changed then."""
    queries = quality_sql(schema, service is not None)
    params: dict[str, Any] = {"start": start, "end": end, "bucket": bucket, "service": service}
    buckets = {at: Bucket(at) for at in bucket_starts(start, end, bucket)}
    with connection.cursor(row_factory=dict_row) as cursor:
        for row in cursor.execute(queries["evaluations"], params).fetchall():
            item = buckets.setdefault(row["bucket"], Bucket(row["bucket"]))
            name = row["name"]
            if name == "hallucination":
                item.answers, item.hallucinated = int(row["n"]), int(row["hallucinated"])
            elif name == "user_feedback":
                item.feedback, item.feedback_count = row["score"], int(row["n"])
            elif row["score"] is not None:
                item.scores[name] = float(row["score"])
        ordered = [buckets[key] for key in sorted(buckets)]
        drop, tried = find_drop(ordered, min_answers)
        report = QualityReport(start, end, int(bucket.total_seconds()), ordered, drop, tried)
        if drop is not None:
            rows = cursor.execute(queries["context"], params | {"at": drop.at}).fetchall()
            report.changes = _changes(rows)
    return report


def _changes(rows: list[dict[str, Any]]) -> list[Change]:
    """The stage attributes whose values differ before and after the change point (models per stage: the chat
    model apart from the embedding model; prompt sizes of the generate stage)."""
    sides: dict[str, dict[bool, dict[str, int]]] = {}
    for row in rows:
        for key, what in (
            ("model", f"model ({row['stage']})"),
            ("chunk_size", "chunk size"),
            ("version", "service.version"),
            ("prompt_band", "prompt size"),
        ):
            value = row[key]
            if value is None:
                continue
            label = _prompt_band(int(value)) if key == "prompt_band" else str(value)
            seen = sides.setdefault(what, {False: {}, True: {}})[row["after"]]
            seen[label] = seen.get(label, 0) + int(row["n"])
    kinds = ("model", "chunk size", "service.version", "prompt size")
    return [
        Change(what, seen[False], seen[True])
        for what, seen in sorted(sides.items(), key=lambda item: (kinds.index(item[0].split(" (")[0]), item[0]))
        if seen[False] and seen[True] and _shifted(seen[False], seen[True])
    ]


def _shifted(before: dict[str, int], after: dict[str, int]) -> bool:
    """A value's share moved by at least CHANGE_SHARE between the sides: a deploy changes what most requests run
    with, though a few stragglers of the old version (or early requests of the new one) cross the boundary."""
    total_before, total_after = sum(before.values()), sum(after.values())
    return any(
        abs(before.get(value, 0) / total_before - after.get(value, 0) / total_after) >= CHANGE_SHARE
        for value in set(before) | set(after)
    )


def _prompt_band(band: int) -> str:
    """width_bucket(tokens, 0, 8192, 8): 1 is 0-1023 input tokens, ..., 9 is 8192 and more."""
    low = (band - 1) * 1024
    return f"{low}+ tokens" if band > 8 else f"{low}-{low + 1023} tokens"
