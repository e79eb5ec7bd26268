"""The questions' latency on a store seeded with 10 M log rows (and 2 M spans) over 30 days.

Seeding runs inside PostgreSQL (INSERT ... SELECT generate_series, one day partition at a time): 200 k traces of
50 log lines and 10 spans (a server span for the request, a chunk size of 60 or 120, a cost on one stage, one
hallucination evaluation), 10 k users, 2 % errors. Then each query runs for random traces / users on one open
connection (the API accepts a connection, as a server would hold one), and once more with a fresh connection per
call (as the CLI does). Goals: debug_trace < 10 ms and find_errors < 50 ms (issue 3); health (15 minutes), quality
(24 hours by the hour), compare (by chunk size, 24 hours) and the debug page's charts (24 hours) < 1 s (issue 14).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import time

import psycopg

from bench import _pg
from bench._verdict import Goal, report
from otel_rag._store import queries
from otel_rag._store.compare import compare_groups, load_requests
from otel_rag._store.health import store_health
from otel_rag._store.quality import quality_report
from otel_rag._store.series import series

DAYS = 30


def seed(dsn: str, logs: int) -> None:
    per_day = logs // DAYS
    traces_per_day = per_day // 50
    today = dt.datetime.now(dt.UTC).date()
    with psycopg.connect(dsn, autocommit=True) as connection:
        for day_index in range(DAYS):
            day = today - dt.timedelta(days=DAYS - 1 - day_index)
            first_trace = day_index * traces_per_day
            params = {"day": day, "n": per_day, "t0": first_trace, "traces": traces_per_day}
            connection.execute(
                "INSERT INTO otel_rag.logs (time, record_id, trace_id, span_id, service_name, user_id, severity, "
                "severity_number, logger, body, attributes) "
                "SELECT %(day)s::timestamptz + (i::float / %(n)s) * interval '1 day', gen_random_uuid(), "
                "md5('t' || (%(t0)s + i / 50)), substr(md5('s' || (%(t0)s + i / 50) || '-' || (i %% 10)), 1, 16), "
                "'rag-api', 'user' || ((%(t0)s + i / 50) %% 10000), "
                "CASE WHEN i %% 50 = 7 THEN 'error' ELSE 'info' END, CASE WHEN i %% 50 = 7 THEN 17 ELSE 9 END, "
                "'rag', 'event ' || (i %% 50), CASE WHEN i %% 50 = 3 THEN jsonb_build_object("
                "'gen_ai.evaluation.name', 'hallucination', 'gen_ai.evaluation.score.label', "
                "CASE WHEN (i / 50) %% 10 = 0 THEN 'hallucinated' ELSE 'grounded' END) "
                "ELSE jsonb_build_object('i', i, 'stage', i %% 6) END "
                "FROM generate_series(0, %(n)s - 1) i",
                params,
            )
            connection.execute(
                "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, parent_span_id, "
                "service_name, user_id, name, kind, status, attributes, cost_usd) "
                "SELECT %(day)s::timestamptz + ((j / 10)::float / %(traces)s) * interval '1 day' "
                "+ (j %% 10) * interval '10 ms', "
                "%(day)s::timestamptz + ((j / 10)::float / %(traces)s) * interval '1 day' + interval '200 ms', "
                "200 - (j %% 10) * 10, md5('t' || (%(t0)s + j / 10)), "
                "substr(md5('s' || (%(t0)s + j / 10) || '-' || (j %% 10)), 1, 16), "
                "CASE WHEN j %% 10 = 0 THEN NULL ELSE substr(md5('s' || (%(t0)s + j / 10) || '-0'), 1, 16) END, "
                "'rag-api', 'user' || ((%(t0)s + j / 10) %% 10000), "
                "CASE WHEN j %% 10 = 0 THEN 'POST /ask' ELSE 'stage' || (j %% 10) END, "
                "CASE WHEN j %% 10 = 0 THEN 'SERVER' ELSE 'INTERNAL' END, "
                "CASE WHEN j %% 50 = 9 THEN 'ERROR' ELSE 'UNSET' END, "
                "CASE WHEN j %% 10 = 0 THEN jsonb_build_object('http.route', '/ask') "
                "ELSE jsonb_build_object('rag.stage', 'stage' || (j %% 10), 'rag.chunk.size', "
                "CASE WHEN (j / 10) %% 2 = 0 THEN 60 ELSE 120 END) END, "
                "CASE WHEN j %% 10 = 5 THEN 0.002 END "
                "FROM generate_series(0, %(traces)s * 10 - 1) j",
                params,
            )
        connection.execute("ANALYZE otel_rag.logs")
        connection.execute("ANALYZE otel_rag.spans")


def _time_ms(func: object, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        func()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _report(name: str, samples: list[float], goal: float | None) -> None:
    ordered = sorted(samples)
    p50, p99 = statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]
    print(f"  {name:<44} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    if goal:
        report([Goal(f"query_latency {name.split(' (', maxsplit=1)[0]} p50", p50, goal, False, " ms")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logs", type=int, default=10_000_000)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    server = _pg.start(days_back=DAYS)
    try:
        dsn = server.dsn()
        started = time.perf_counter()
        seed(dsn, args.logs)
        with psycopg.connect(dsn) as connection:
            logs, spans = connection.execute(
                "SELECT (SELECT count(*) FROM otel_rag.logs), (SELECT count(*) FROM otel_rag.spans)"
            ).fetchone() or (0, 0)
        print(f"seeded {logs:,} log rows and {spans:,} spans over {DAYS} days in {time.perf_counter() - started:.0f}s")
        traces = logs // 50
        rng = random.Random(7)
        trace_ids = [queries_md5(dsn, rng.randrange(traces)) for _ in range(args.calls)]
        users = [f"user{rng.randrange(10_000)}" for _ in range(args.calls)]
        with psycopg.connect(dsn, autocommit=True) as connection:
            for trace_id in trace_ids[:20]:  # warm the caches the way a running service has them
                queries.debug_trace(connection, trace_id)
            it = iter(trace_ids)
            _report(
                "debug_trace (open connection)",
                _time_ms(lambda: queries.debug_trace(connection, next(it)), args.calls),
                10,
            )
            users_it = iter(users)
            _report(
                "find_errors, last 7 days (open connection)",
                _time_ms(lambda: queries.find_errors(connection, next(users_it), since="-7d"), args.calls),
                50,
            )
            now = dt.datetime.now(dt.UTC)
            _report(
                "health, last 15 minutes",
                _time_ms(lambda: store_health(connection, "otel_rag", now - dt.timedelta(minutes=15), now), 20),
                1000,
            )
            day_ago, hour = now - dt.timedelta(days=1), dt.timedelta(hours=1)
            _report(
                "quality, 24 hours by the hour",
                _time_ms(lambda: quality_report(connection, "otel_rag", day_ago, now, hour), 10),
                1000,
            )
            _report(
                "compare by rag.chunk.size, 24 hours",
                _time_ms(
                    lambda: compare_groups(
                        load_requests(connection, "otel_rag", day_ago, now, attribute="rag.chunk.size")
                    ),
                    5,
                ),
                1000,
            )
            minute = dt.timedelta(minutes=12)  # the page's 24 hours in 120 points
            _report(
                "page charts, 24 hours, 120 points",
                _time_ms(lambda: series(connection, "otel_rag", day_ago, now, minute), 10),
                1000,
            )
        it = iter(trace_ids)
        _report("debug_trace (new connection per call)", _time_ms(lambda: queries.debug_trace(dsn, next(it)), 50), None)
    finally:
        server.remove()


def queries_md5(dsn: str, index: int) -> str:
    import hashlib

    return hashlib.md5(f"t{index}".encode()).hexdigest()  # the seed's trace ids are md5('t' || n)


if __name__ == "__main__":
    main()
