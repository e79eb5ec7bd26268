"""`otel-rag compare`: should I increase chunk size? Requests grouped by a span attribute, or before and after a
time, compared with 95 % bootstrap intervals and a plain verdict (from the store; the reader role is enough).

    otel-rag compare --by rag.chunk.size                 # every value against the most common one
    otel-rag compare --by gen_ai.request.model --stage generate
    otel-rag compare --before 14:00 --after 14:00         # the deployment at 14:00: before against after

Exit status: 0 compared, 1 nothing to compare (fewer than two groups), 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import psycopg

from otel_rag._cli.options import time_window
from otel_rag._config.settings import ConfigError, load_settings
from otel_rag._store import queries
from otel_rag._store.compare import Comparison, Group, compare_groups, load_requests, to_document, verdict

__all__ = ["add_compare_command"]


def _render(label: str, groups: list[Group], comparisons: list[Comparison]) -> str:
    lines = [
        f"  {label[:20]:<20} {'n':>6} {'p50 ms':>9} {'p95 ms':>9} {'$/request':>10} {'tokens':>8} {'errors':>7}"
        f" {'halluc.':>8}"
    ]
    for group in groups:
        hallucination = f"{group.hallucination_rate:.1%}" if group.hallucination_rate is not None else "-"
        p50 = f"{group.p50_ms:.0f}" if group.p50_ms is not None else "-"
        p95 = f"{group.p95_ms:.0f}" if group.p95_ms is not None else "-"
        lines.append(
            f"  {group.name[:20]:<20} {group.n:>6} {p50:>9} {p95:>9} {group.cost_per_request:>10.5f}"
            f" {group.tokens_per_request:>8.0f} {group.error_rate:>7.1%} {hallucination:>8}"
        )
    lines.extend(verdict(label, comparison) for comparison in comparisons)
    return "\n".join(lines)


def _compare(args: argparse.Namespace) -> int:
    if (args.by is None) == (args.before is None and args.after is None):
        raise queries.InvalidInput("say what to compare: --by ATTRIBUTE, or --before TIME and/or --after TIME")
    settings = load_settings()
    dsn = args.dsn or settings.postgres_dsn
    if not dsn:
        raise ConfigError("OTEL_RAG_POSTGRES_DSN", "", "a postgresql:// URL (or pass --dsn)")
    start, end = queries.time_range(args.since, args.until)
    before = queries.parse_time(args.before) if args.before else None
    after = queries.parse_time(args.after) if args.after else None
    with psycopg.connect(dsn) as connection:
        requests = load_requests(
            connection,
            settings.postgres_schema,
            start,
            end,
            attribute=args.by,
            before=before,
            after=after,
            stage=args.stage,
        )
    baseline = args.baseline or ("before" if args.by is None else None)
    groups, comparisons = compare_groups(requests, baseline)
    label = args.by or "time"
    if args.json:
        print(json.dumps(to_document(groups, comparisons, label), indent=2))
    elif len(groups) < 2:
        print(f"nothing to compare: {len(groups)} group(s) of requests in the window")
    else:
        print(_render(label, groups, comparisons))
    return 0 if len(groups) >= 2 else 1


def add_compare_command(commands: Any, store_options: Any) -> None:
    compare = commands.add_parser("compare", help="compare requests by an attribute, or before and after a time")
    store_options(compare)
    compare.add_argument("--by", help="a span or resource attribute: rag.chunk.size, gen_ai.request.model, ...")
    compare.add_argument("--before", help="with --after: requests starting before this time (ISO, 15:00, -2h)")
    compare.add_argument("--after", help="requests starting at or after this time")
    compare.add_argument("--stage", help="latency of this RAG stage's spans (default: the whole request)")
    compare.add_argument("--baseline", help="the group the others are compared with (default: the largest)")
    time_window(compare, "-24h")
    compare.set_defaults(run=_compare)
