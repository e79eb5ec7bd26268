"""`otel-rag health`: is the system healthy? One screen, and an exit status a probe or a cron check can use.

The service side comes from the store (the reader role is enough): request rate, error rate, p95 per route,
hallucination rate, cost per hour, and the age of the newest row (is telemetry arriving?). The pipeline side comes
from Prometheus when OTEL_RAG_PROMETHEUS_URL is set, through its HTTP API: bytes in the sinks' spools, records
dropped and retried, LangSmith failures, and the alerts firing.

Exit status: 0 healthy, 1 degraded, 2 down. The thresholds are the alert rules' (prometheus/alerts.yaml), so the
command and the pager agree: errors over 5 % (of at least 20 requests) degrade and over 50 % (of at least 10) are
down; a route's p95 over 2 s, hallucinations over 10 % (of at least 10 answers), anything spooled, dropped or
failing, no telemetry in the window, or a ticket alert degrade; a page alert, an unreachable store or no telemetry
for a day is down.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import psycopg

from otel_rag._cli.options import time_window
from otel_rag._config.settings import ConfigError, load_settings
from otel_rag._store import queries
from otel_rag._store.health import (
    DOWN,
    Pipeline,
    StoreHealth,
    Verdict,
    duration_text,
    health_document,
    judge,
    store_health,
)

__all__ = ["add_health_command"]

_PIPELINE_QUERIES = {
    "spooled_bytes": "sum(otel_rag_sink_spool_size_bytes)",
    "dropped": "sum(increase(otel_rag_sink_dropped_total[{window}]))",
    "retried": "sum(increase(otel_rag_sink_retried_total[{window}]))",
    "langsmith_failed": "sum(increase(otel_rag_langsmith_failed_total[{window}]))",
}


def _prometheus(url: str, window: str) -> Pipeline:
    pipeline = Pipeline()
    try:
        for name, query in _PIPELINE_QUERIES.items():
            answer = _get(url, "/api/v1/query", {"query": query.format(window=window)})
            result = answer["data"]["result"]
            pipeline.figures[name] = float(result[0]["value"][1]) if result else 0.0
        alerts = _get(url, "/api/v1/alerts", {})["data"]["alerts"]
        pipeline.alerts = [
            {"name": a["labels"].get("alertname", "?"), "severity": a["labels"].get("severity", "")}
            for a in alerts
            if a.get("state") == "firing"
        ]
    except (OSError, ValueError, KeyError, IndexError) as error:
        pipeline.error = str(error).splitlines()[0] if str(error) else type(error).__name__
    return pipeline


def _get(url: str, path: str, params: dict[str, str]) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}{path}{query}", timeout=5) as response:  # noqa: S310 - http(s) checked
        return json.loads(response.read())


def _window(start: dt.datetime, end: dt.datetime) -> str:
    return f"{max(1, round((end - start).total_seconds()))}s"


def _health(args: argparse.Namespace) -> int:
    settings = load_settings()
    dsn = args.dsn or settings.postgres_dsn
    if not dsn:
        raise ConfigError("OTEL_RAG_POSTGRES_DSN", "", "a postgresql:// URL (or pass --dsn)")
    start, end = queries.time_range(args.since, args.until)
    now = dt.datetime.now(dt.UTC)
    try:
        with psycopg.connect(dsn, connect_timeout=5) as connection:
            store = store_health(connection, settings.postgres_schema, start, end, args.service)
    except psycopg.OperationalError as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return _report_down(args, f"the store cannot be reached: {first_line}")
    pipeline = _prometheus(settings.prometheus_url, _window(start, end)) if settings.prometheus_url else None
    verdict = judge(store, pipeline, now)
    if args.json:
        print(json.dumps(health_document(store, pipeline, verdict, now), indent=2))
    else:
        print(_render(store, pipeline, verdict, now))
    return verdict.status


def _report_down(args: argparse.Namespace, reason: str) -> int:
    if args.json:
        print(json.dumps({"status": "DOWN", "reasons": [reason]}, indent=2))
    else:
        print(f"health: DOWN\nwhy: {reason}")
    return DOWN


def _render(store: StoreHealth, pipeline: Pipeline | None, verdict: Verdict, now: dt.datetime) -> str:
    minutes = store.minutes
    rate = store.error_rate
    lines = [
        f"health {store.start:%Y-%m-%d %H:%M} to {store.end:%H:%M} ({minutes:.0f} min): {verdict.name}",
        f"  requests    {store.requests} ({store.requests / minutes:.1f}/min), errors "
        + (f"{rate:.1%}" if rate is not None else "-"),
    ]
    for route in store.routes[:5]:
        lines.append(f"  p95         {route.route} {route.p95_ms:.0f} ms (n={route.requests}, {route.service})")
    hallucinations = store.hallucination_rate
    lines.append(
        f"  answers     {store.answers}, hallucinations "
        + (f"{hallucinations:.1%}" if hallucinations is not None else "-")
    )
    lines.append(f"  cost        ${store.cost_per_hour:.4f}/h")
    age = store.freshness_s(now)
    lines.append(f"  store       newest row {duration_text(age) + ' ago' if age is not None else 'over a day ago'}")
    if pipeline is None:
        lines.append("  pipeline    (set OTEL_RAG_PROMETHEUS_URL for spools, drops, LangSmith and alerts)")
    elif pipeline.error:
        lines.append(f"  pipeline    Prometheus not answering: {pipeline.error}")
    else:
        figures = pipeline.figures
        lines.append(
            f"  pipeline    spooled {figures.get('spooled_bytes', 0):.0f} B, dropped {figures.get('dropped', 0):.0f},"
            f" retried {figures.get('retried', 0):.0f}, LangSmith failures {figures.get('langsmith_failed', 0):.0f}"
        )
        firing = ", ".join(f"{a['name']} ({a['severity'] or '-'})" for a in pipeline.alerts) or "none"
        lines.append(f"  alerts      {firing}")
    if verdict.reasons:
        lines.append("why: " + "; ".join(verdict.reasons))
    return "\n".join(lines)


def add_health_command(commands: Any, store_options: Any) -> None:
    health = commands.add_parser("health", help="is the system healthy? exit 0 healthy, 1 degraded, 2 down")
    store_options(health)
    time_window(health, "-15m")
    health.add_argument("--service", help="only this service")
    health.set_defaults(run=_health)
