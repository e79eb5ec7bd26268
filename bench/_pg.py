"""Shared by the store benchmarks: a throwaway embedded PostgreSQL, migrated, with partitions for the data."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import psycopg

from otel_rag._store.embedded import LocalPostgres
from otel_rag._store.migrate import ensure_partitions, migrate


def start(days_back: int = 1) -> LocalPostgres:
    base = Path(tempfile.mkdtemp(prefix="otel-rag-bench-", dir="/tmp"))
    base.chmod(0o755)
    server = LocalPostgres(base / "data").start()
    migrate(server.dsn())
    today = dt.datetime.now(dt.UTC).date()
    with psycopg.connect(server.dsn(), autocommit=True) as connection:
        ensure_partitions(connection, "otel_rag", today - dt.timedelta(days=days_back), today + dt.timedelta(days=1))
    return server
