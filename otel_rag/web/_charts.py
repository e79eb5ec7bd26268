"""The debug API's answers for the page's pictures: requests and cost over time, the quality trend with its drop,
the health strip, the compare view, and the hallucinated answers behind a point.

They run the same store functions as `otel-rag quality`, `compare` and `health` (so the page and the terminal agree)
with the same access check, validation and bounds as the rest of the API (_api.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from otel_rag._store import queries
from otel_rag._store.compare import compare_groups, load_requests, to_document
from otel_rag._store.health import health_document, judge, store_health
from otel_rag._store.quality import quality_report
from otel_rag._store.series import MAX_POINTS, Answer, auto_bucket, judged_answers, series
from otel_rag.web._access import DebugConfig
from otel_rag.web._api import _answer, _answers, _limit, _text

__all__ = ["charts_router"]

charts_router = APIRouter()

_LABELS = ("hallucinated", "grounded")


def _window(since: str | None, until: str | None, default: str) -> tuple[dt.datetime, dt.datetime]:
    return queries.time_range(_text(since, "since") or default, _text(until, "until"))


def _bucketed(since: str | None, until: str | None, value: str | None) -> tuple[dt.datetime, dt.datetime, dt.timedelta]:
    """The window (default: the last 24 hours) and the bucket asked for (30s, 10m, 1h), or one that draws the window
    in at most MAX_POINTS points."""
    start, end = _window(since, until, "-24h")
    text = _text(value, "bucket")
    bucket = queries.parse_bucket(text, "bucket") if text else auto_bucket(start, end)
    if (end - start) / bucket > MAX_POINTS * 10:
        raise queries.InvalidInput(f"bucket {text!r} makes more than {MAX_POINTS * 10} points: use a larger one")
    return start, end, bucket


@charts_router.get("/debug/api/series", responses=_answers(dict[str, Any]))
def get_series(
    request: Request,
    *,
    since: str | None = None,
    until: str | None = None,
    bucket: str | None = None,
    service: str | None = None,
) -> JSONResponse:
    """Requests, errors and p95 per bucket, and cost per bucket by model (default: the last 24 hours)."""

    def query(connection: psycopg.Connection[Any], config: DebugConfig) -> Any:
        start, end, size = _bucketed(since, until, bucket)
        return series(connection, config.schema, start, end, size, service=_text(service, "service")).to_document()

    return _answer(request, query)


@charts_router.get("/debug/api/quality", responses=_answers(dict[str, Any]))
def get_quality(
    request: Request,
    *,
    since: str | None = None,
    until: str | None = None,
    bucket: str | None = None,
    service: str | None = None,
) -> JSONResponse:
    """Answer quality per bucket, the drop if one is significant and what changed then (`otel-rag quality`)."""

    def query(connection: psycopg.Connection[Any], config: DebugConfig) -> Any:
        start, end, size = _bucketed(since, until, bucket)
        report = quality_report(connection, config.schema, start, end, size, service=_text(service, "service"))
        return report.to_document()

    return _answer(request, query)


@charts_router.get("/debug/api/health", responses=_answers(dict[str, Any]))
def get_health(
    request: Request, *, since: str | None = None, until: str | None = None, service: str | None = None
) -> JSONResponse:
    """The store's side of `otel-rag health` for a window (default: the last 15 minutes) and its verdict."""

    def query(connection: psycopg.Connection[Any], config: DebugConfig) -> Any:
        start, end = _window(since, until, "-15m")
        store = store_health(connection, config.schema, start, end, _text(service, "service"))
        now = dt.datetime.now(dt.UTC)
        return health_document(store, None, judge(store, None, now), now)

    return _answer(request, query)


@charts_router.get("/debug/api/compare", responses=_answers(dict[str, Any]))
def get_compare(
    request: Request,
    *,
    by: str | None = None,
    before: str | None = None,
    after: str | None = None,
    stage: str | None = None,
    baseline: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> JSONResponse:
    """Requests grouped by an attribute (`by=rag.chunk.size`) or by time (`before`/`after`), each group with its
    figures and latency distribution, compared with the baseline (`otel-rag compare`)."""

    def query(connection: psycopg.Connection[Any], config: DebugConfig) -> Any:
        attribute = _text(by, "by")
        if (attribute is None) == (before is None and after is None):
            raise queries.InvalidInput("say what to compare: by=ATTRIBUTE, or before=TIME and/or after=TIME")
        start, end = _window(since, until, "-24h")
        split = {
            name: queries.parse_time(text) if text else None
            for name, text in (("before", _text(before, "before")), ("after", _text(after, "after")))
        }
        requests = load_requests(
            connection, config.schema, start, end, attribute=attribute, stage=_text(stage, "stage"), **split
        )
        chosen = _text(baseline, "baseline") or (None if attribute else "before")
        groups, comparisons = compare_groups(requests, chosen)
        return to_document(groups, comparisons, attribute or "time")

    return _answer(request, query)


@charts_router.get("/debug/api/answers", responses=_answers(list[Answer]))
def list_answers(
    request: Request,
    *,
    label: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: str | None = None,
) -> JSONResponse:
    """Answers the hallucination evaluation judged (`label=hallucinated`, the default, or `grounded`), newest first."""

    def query(connection: psycopg.Connection[Any], config: DebugConfig) -> Any:
        wanted = _text(label, "label") or "hallucinated"
        if wanted not in _LABELS:
            raise queries.InvalidInput(f"label {wanted!r} is not valid; accepted: {', '.join(_LABELS)}")
        start, end = _window(since, until, "-1h")
        return judged_answers(connection, config.schema, start, end, label=wanted, limit=_limit(limit, 50, 1000))

    return _answer(request, query)
