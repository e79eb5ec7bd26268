"""Lossless under failure: Postgres down for 30 s mid-load, and a process killed with records in its spool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from otel_rag._store.embedded import LocalPostgres
from otel_rag._store.migrate import migrate
from tests.support.postgres import scratch_dir, start_server
from tests.support.processes import BIN, REPO, base_env

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`


def _emitter(server: LocalPostgres, spool: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    environment = base_env(
        OTEL_SERVICE_NAME="load",
        OTEL_LOGS_EXPORTER="postgres",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_RAG_POSTGRES_DSN=server.dsn(),
        OTEL_RAG_SPOOL_DIR=str(spool),
        OTEL_RAG_POSTGRES_QUEUE_SIZE="500",
        OTEL_RAG_POSTGRES_BATCH_SIZE="200",
        OTEL_RAG_POSTGRES_SHUTDOWN_TIMEOUT="30000",
        **env,
    )
    return subprocess.Popen(
        [str(BIN / "python"), "-m", "tests.support.emit_load", *args],
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _counts(server: LocalPostgres) -> tuple[int, int]:
    with psycopg.connect(server.dsn()) as connection:
        row = connection.execute(
            "SELECT count(*), count(DISTINCT (attributes->>'seq')::int) FROM otel_rag.logs WHERE service_name = 'load'"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _stats(stderr: str) -> dict[str, object]:
    lines = [line for line in stderr.splitlines() if line.startswith('{"flushed"')]
    assert lines, stderr
    return dict(json.loads(lines[-1]))


def test_postgres_down_for_30_seconds_mid_load_loses_and_duplicates_nothing() -> None:
    server = start_server()
    try:
        migrate(server.dsn())
        spool = scratch_dir("spool-")
        emitter = _emitter(server, spool, "--count", "3000", "--rate", "60")
        time.sleep(5)
        server.stop("fast")
        stopped_at = time.monotonic()
        time.sleep(30)
        assert emitter.poll() is None, "the app must keep running while Postgres is down"
        server.start()
        _, stderr = emitter.communicate(timeout=180)
        assert emitter.returncode == 0, stderr
        outage = time.monotonic() - stopped_at
        assert outage >= 30
        total, distinct = _counts(server)
        assert (total, distinct) == (3000, 3000)
        report = _stats(stderr)
        stats = report["stats"]
        assert isinstance(stats, dict)
        assert stats.get("spooled", 0) > 0, stats  # the memory queue overflowed to disk during the outage
        assert stats.get("retried", 0) > 0, stats
        assert stats.get("dropped", 0) == 0, stats
        assert not list(spool.rglob("*.seg")), "the spool is empty once replayed"
    finally:
        server.remove()


def test_killed_process_spool_is_replayed_after_restart() -> None:
    server = start_server()
    try:
        migrate(server.dsn())
        server.stop("fast")  # Postgres is down while the first process runs
        spool = scratch_dir("spool-")
        first = _emitter(server, spool, "--count", "500", "--rate", "5000", "--hold")
        deadline = time.monotonic() + 60
        stderr_lines: list[str] = []
        assert first.stderr is not None
        while time.monotonic() < deadline:
            line = first.stderr.readline()
            stderr_lines.append(line)
            if line.startswith('{"flushed"'):
                break
        report = json.loads(stderr_lines[-1])
        assert report["flushed"] is True and report["stats"]["spooled"] == 500, stderr_lines
        os.kill(first.pid, signal.SIGKILL)  # no atexit, no flush: only the spool survives
        first.wait(10)
        assert list(spool.rglob("*.seg")), "the killed process left its spool"
        server.start()
        second = _emitter(server, spool, "--count", "0")
        _, stderr = second.communicate(timeout=120)
        assert second.returncode == 0, stderr
        assert _counts(server) == (500, 500)
        assert _stats(stderr)["stats"].get("replayed") == 500  # type: ignore[attr-defined]
        assert not list(spool.rglob("*.seg"))
    finally:
        server.remove()
