"""Emit -> visible in a query: how long until a log line can be read back from Postgres, p50 and p99.

An emitter process logs through otel-rag's Postgres sink at a fixed rate (1k/s, then 20k/s by default), each
line carrying its sequence number and emit time (time.time_ns()). This process polls the store every 5 ms for
lines it has not seen yet and records, for each, (moment of the poll that first returned it) - (emit time).
Goal (issue 3): p99 < 100 ms at 1k events/s and < 1 s at 20k events/s. Poll granularity adds up to 5 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench import _pg
from bench._verdict import Goal, report

POLL_S = 0.005


def emit(rate: float, seconds: float) -> None:
    """Child process: log `rate` lines a second for `seconds` through the configured Postgres sink."""
    import otel_rag
    from otel_rag._store import writer as writer_module

    otel_rag.configure()
    log = otel_rag.get_logger("fresh")
    total = int(rate * seconds)
    started = time.monotonic()
    for seq in range(total):
        log.info("fresh.event", seq=seq, emit_ns=time.time_ns())
        ahead = started + (seq + 1) / rate - time.monotonic()
        if ahead > 0.001:
            time.sleep(ahead)
    for writer in writer_module._shared.values():
        writer.force_flush(60)
    sys.stderr.write(f"emitted {total} in {time.monotonic() - started:.2f}s\n")


def measure(dsn: str, rate: float, seconds: float) -> list[float]:
    env = dict(os.environ)
    env.update(
        {
            "OTEL_SERVICE_NAME": f"fresh-{int(rate)}",
            "OTEL_LOGS_EXPORTER": "postgres",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_RAG_LOG_FORMAT": "json",
            "OTEL_RAG_POSTGRES_DSN": dsn,
            "OTEL_RAG_SPOOL_DIR": tempfile.mkdtemp(),
        }
    )
    with open(os.devnull, "w") as devnull:
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.freshness", "--emit", str(rate), str(seconds)],
            env=env,
            stdout=devnull,
            cwd=Path(__file__).resolve().parents[1],
        )
        latencies: list[float] = []
        expected = int(rate * seconds)
        last_seq = -1
        with psycopg.connect(dsn, autocommit=True) as connection:
            deadline = time.monotonic() + seconds + 60
            while len(latencies) < expected and time.monotonic() < deadline:
                rows = connection.execute(
                    "SELECT (attributes->>'seq')::int, (attributes->>'emit_ns')::bigint FROM otel_rag.logs "
                    "WHERE time >= now() - interval '30 seconds' AND service_name = %s "
                    "AND (attributes->>'seq')::int > %s",
                    (f"fresh-{int(rate)}", last_seq),
                ).fetchall()
                seen_ns = time.time_ns()
                for seq, emit_ns in rows:
                    latencies.append((seen_ns - emit_ns) / 1e6)
                    last_seq = max(last_seq, seq)
                time.sleep(POLL_S)
        child.wait(120)
    if len(latencies) != expected:
        raise SystemExit(f"only {len(latencies)} of {expected} lines became visible")
    return latencies


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--emit":
        emit(float(sys.argv[2]), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="1000,20000")
    args = parser.parse_args()
    server = _pg.start()
    try:
        print(f"{server.version()}; flush interval {os.environ.get('OTEL_RAG_POSTGRES_FLUSH_INTERVAL', '50')} ms")
        goals = {1000.0: 100.0, 20000.0: 1000.0}
        for rate in (float(r) for r in args.rates.split(",")):
            latencies = measure(server.dsn(), rate, args.seconds)
            p50, p99 = statistics.median(latencies), _percentile(latencies, 0.99)
            print(
                f"  {rate:>7,.0f} events/s for {args.seconds:.0f}s: p50 {p50:6.1f} ms, p99 {p99:6.1f} ms, "
                f"max {max(latencies):6.1f} ms"
            )
            if rate in goals:
                report([Goal(f"freshness p99 at {rate:,.0f} events/s", p99, goals[rate], False, " ms")])
    finally:
        server.remove()


if __name__ == "__main__":
    main()
