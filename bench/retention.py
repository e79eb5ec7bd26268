"""The retention job on a store of 37 days: archive speed, Parquet vs Postgres bytes, thinning, archive lookups.

Seeding runs inside PostgreSQL (generate_series, one day at a time): per day `--traces` traces of 10 spans and 50
log lines, 2 % of them with an error span and 2 % with an error log line, durations spread so a few roots are
slower than the day's p95. Then, on an embedded PostgreSQL and a local archive folder:
- one day archived by itself (rows/s, the export and the verification included), Parquet bytes per row against
  Postgres bytes per row (pg_total_relation_size of the day's partitions, indexes included);
- that day thinned (the locked DELETE) and rewritten (VACUUM FULL), in seconds;
- a whole run over the remaining days (30 days thinned or dropped);
- a trace looked up in 30 days of archive, as `otel-rag trace` does when a trace has left Postgres (p50 of
  `--lookups`), and the same lookup over one day written with three row group sizes, which is why the archive
  writes row groups of archive.ROW_GROUP_ROWS rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from bench import _pg
from otel_rag._store import archive as archive_module
from otel_rag._store.archive import Archive
from otel_rag._store.from_archive import load_trace, temporary_store
from otel_rag._store.retention import Policy, run, sampler_bound
from otel_rag._store.retention_steps import DayStore

DAYS = 37
POLICY = Policy(hot_days=7, warm_days=30, warm_sample_ratio=0.1, archive_days=365)


def seed(dsn: str, today: dt.date, traces: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        for age in range(DAYS):
            day = today - dt.timedelta(days=age)
            params = {"day": day, "traces": traces, "t0": age * traces}
            connection.execute(
                "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, parent_span_id, "
                "parent_remote, service_name, user_id, name, kind, status, attributes) "
                "SELECT %(day)s::timestamptz + ((j / 10)::float / %(traces)s) * interval '1 day' "
                "+ (j %% 10) * interval '10 ms', "
                "%(day)s::timestamptz + ((j / 10)::float / %(traces)s) * interval '1 day' + interval '200 ms', "
                "CASE WHEN j %% 10 = 0 THEN 100 + (j / 10) %% 997 ELSE 10 END, md5('t' || (%(t0)s + j / 10)), "
                "substr(md5('s' || (%(t0)s + j / 10) || '-' || (j %% 10)), 1, 16), "
                "CASE WHEN j %% 10 = 0 THEN NULL ELSE substr(md5('s' || (%(t0)s + j / 10) || '-0'), 1, 16) END, "
                "CASE WHEN j %% 10 = 0 THEN false END, 'rag-api', 'user' || ((%(t0)s + j / 10) %% 10000), "
                "CASE WHEN j %% 10 = 0 THEN 'POST /ask' ELSE 'stage' || (j %% 10) END, "
                "CASE WHEN j %% 10 = 0 THEN 'SERVER' ELSE 'INTERNAL' END, "
                "CASE WHEN j %% 10 = 9 AND (j / 10) %% 50 = 0 THEN 'ERROR' ELSE 'UNSET' END, "
                "CASE WHEN j %% 10 = 0 THEN jsonb_build_object('http.route', '/ask') "
                "ELSE jsonb_build_object('rag.stage', 'stage' || (j %% 10)) END "
                "FROM generate_series(0, %(traces)s * 10 - 1) j",
                params,
            )
            connection.execute(
                "INSERT INTO otel_rag.logs (time, record_id, trace_id, span_id, service_name, user_id, severity, "
                "severity_number, logger, body, attributes) "
                "SELECT %(day)s::timestamptz + ((i / 50)::float / %(traces)s) * interval '1 day' "
                "+ (i %% 50) * interval '2 ms', gen_random_uuid(), md5('t' || (%(t0)s + i / 50)), "
                "substr(md5('s' || (%(t0)s + i / 50) || '-' || (i %% 10)), 1, 16), 'rag-api', "
                "'user' || ((%(t0)s + i / 50) %% 10000), "
                "CASE WHEN i %% 50 = 7 AND (i / 50) %% 50 = 25 THEN 'error' ELSE 'info' END, "
                "CASE WHEN i %% 50 = 7 AND (i / 50) %% 50 = 25 THEN 17 ELSE 9 END, "
                "'rag', 'event ' || (i %% 50), jsonb_build_object('i', i, 'stage', i %% 6) "
                "FROM generate_series(0, %(traces)s * 50 - 1) i",
                params,
            )
        connection.execute("ANALYZE otel_rag.logs")
        connection.execute("ANALYZE otel_rag.spans")


def _lookup_ms(dsn: str, archive: Archive, trace_ids: list[str]) -> list[float]:
    samples = []
    with psycopg.connect(dsn) as connection:
        for trace_id in trace_ids:
            started = time.perf_counter()
            with temporary_store(connection, "otel_rag"):
                assert load_trace(connection, "otel_rag", archive, trace_id) > 0, trace_id
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=4000, help="traces per day (60 rows each)")
    parser.add_argument("--lookups", type=int, default=20)
    args = parser.parse_args()
    server = _pg.start(days_back=DAYS + 1)
    folder = Path(tempfile.mkdtemp(prefix="otel-rag-bench-archive-"))
    try:
        dsn = server.dsn()
        now = dt.datetime.now(dt.UTC)
        today = now.date()
        started = time.perf_counter()
        seed(dsn, today, args.traces)
        rows_per_day = args.traces * 60
        print(f"seeded {DAYS} days of {rows_per_day:,} rows in {time.perf_counter() - started:.0f}s")
        archive = Archive(f"file://{folder}/archive")
        day = today - dt.timedelta(days=12)
        with psycopg.connect(dsn, autocommit=True) as connection:
            store = DayStore(connection, "otel_rag", archive)
            postgres_bytes = sum(store.relation_bytes(signal, day) for signal in ("logs", "spans"))
            started = time.perf_counter()
            archived = sum(store.archive_new_rows(day, signal) for signal in ("logs", "spans"))
            seconds = time.perf_counter() - started
            parquet_bytes = connection.execute("SELECT sum(object_bytes) FROM otel_rag.retention_objects").fetchone()
            assert parquet_bytes is not None
            print(f"archive one day: {archived:,} rows in {seconds:.1f}s = {archived / seconds:,.0f} rows/s")
            print(
                f"bytes per row: Parquet {parquet_bytes[0] / archived:.1f}, Postgres {postgres_bytes / archived:.1f} "
                f"(indexes included): the archive is {postgres_bytes / parquet_bytes[0]:.1f}x smaller"
            )
            started = time.perf_counter()
            with connection.transaction():
                assert store.lock_and_verify(day, {"logs", "spans"}, "SHARE ROW EXCLUSIVE")
                store.keep_traces(day, store.partitions(), False, sampler_bound(POLICY.warm_sample_ratio))
                removed = store.thin(day, {"logs", "spans"}, sampler_bound(POLICY.warm_sample_ratio))
            locked = time.perf_counter() - started
            started = time.perf_counter()
            freed = sum(store.rewrite(day, signal) for signal in ("logs", "spans"))
            print(
                f"thin one day: {removed:,} rows removed in {locked:.2f}s under the lock, rewritten (VACUUM FULL) in "
                f"{time.perf_counter() - started:.2f}s, {freed / 1e6:.1f} MB freed"
            )
        started = time.perf_counter()
        report = run(dsn, "otel_rag", POLICY, archive, now)
        print(
            f"full run: {report.archived_rows:,} rows archived, {report.thinned_rows:,} thinned, "
            f"{report.dropped_rows:,} dropped in {time.perf_counter() - started:.0f}s"
        )
        rng = random.Random(7)
        old = [age * args.traces + rng.randrange(args.traces) for age in rng.choices(range(8, DAYS), k=args.lookups)]
        trace_ids = [_md5(f"t{index}") for index in old]
        samples = _lookup_ms(dsn, archive, trace_ids)
        print(f"trace lookup in {DAYS - 7} days of archive: p50 {statistics.median(samples):.0f} ms")
        print("one day's spans and logs, one trace looked up, by row group size:")
        for rows in (16_384, 131_072, 1_048_576):
            archive_module.ROW_GROUP_ROWS = rows
            scratch = Archive(f"file://{folder}/groups-{rows}")
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute("TRUNCATE otel_rag.retention_objects, otel_rag.retention_days")
                store = DayStore(connection, "otel_rag", scratch)
                store.archive_new_rows(today - dt.timedelta(days=3), "logs")
                store.archive_new_rows(today - dt.timedelta(days=3), "spans")
            ids = [_md5(f"t{3 * args.traces + rng.randrange(args.traces)}") for _ in range(args.lookups)]
            size = sum(path.stat().st_size for path in (folder / f"groups-{rows}").rglob("*.parquet"))
            print(
                f"  {rows:>9,} rows per group: p50 {statistics.median(_lookup_ms(dsn, scratch, ids)):6.1f} ms, "
                f"{size / 1e6:.1f} MB"
            )
    finally:
        server.remove()


def _md5(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()  # the seed's trace ids are md5('t' || n)


if __name__ == "__main__":
    main()
