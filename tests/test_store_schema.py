"""Migrations, roles and partitions on a real PostgreSQL (18, and Debian's 15 as the oldest supported)."""

from __future__ import annotations

import datetime as dt
import subprocess
from typing import Any

import psycopg
import pytest

from otel_rag._store.migrate import (
    available_migrations,
    drop_partitions_before,
    ensure_partitions,
    list_partitions,
    migrate,
)
from tests.support.postgres import DEBIAN_PG15, Database, start_server
from tests.support.processes import BIN

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`


def test_migrate_is_idempotent_and_recorded(store: Database) -> None:
    assert migrate(store.admin_dsn) == []  # the fixture applied everything already
    versions = store.scalar("SELECT array_agg(version ORDER BY version) FROM otel_rag.schema_migrations")
    assert versions == [m.version for m in available_migrations()]
    # Partitioned by time, one partition a day.
    assert store.scalar("SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'otel_rag.logs'::regclass") == "r"


def test_concurrent_migrations_apply_each_file_once(pg_server: Any) -> None:
    import uuid

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"'.encode())
    dsn = pg_server.dsn(dbname=name)
    processes = [
        subprocess.Popen(
            [str(BIN / "otel-rag"), "migrate", "--dsn", dsn], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, outputs
    applied = [out.decode() for out, _ in outputs if b"applied:" in out]
    assert len(applied) == 1, f"exactly one process applies the migrations: {outputs}"
    with psycopg.connect(dsn) as connection:
        count = connection.execute("SELECT count(*) FROM otel_rag.schema_migrations").fetchone()
    assert count == (len(available_migrations()),)


def test_roles_are_least_privilege(store: Database) -> None:
    now = dt.datetime.now(dt.UTC)
    row = (now, "00000000-0000-4000-8000-000000000001", "a" * 32, "svc", "info", 9)
    insert = (
        "INSERT INTO otel_rag.logs (time, record_id, trace_id, service_name, severity, severity_number) "
        "VALUES (%s, %s, %s, %s, %s, %s)"
    )
    with psycopg.connect(store.dsn("rag_writer"), autocommit=True) as writer:
        writer.execute("SELECT otel_rag.ensure_partitions(current_date - 1, current_date + 5)")
        writer.execute(insert, row)
        for forbidden in (
            "SELECT count(*) FROM otel_rag.logs",
            "DELETE FROM otel_rag.logs",
            "DROP TABLE otel_rag.logs",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                writer.execute(forbidden.encode())
    with psycopg.connect(store.dsn("rag_reader"), autocommit=True) as reader:
        assert reader.execute("SELECT count(*) FROM otel_rag.logs").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(insert, row)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("SELECT otel_rag.ensure_partitions(current_date, current_date)")
    with psycopg.connect(store.dsn("rag_maint"), autocommit=True) as maintainer:
        dropped = drop_partitions_before(maintainer, "otel_rag", dt.date.today() + dt.timedelta(days=10))
        assert dropped  # the maintainer may detach and drop whole days


def test_partitions_ahead_and_retention(store: Database) -> None:
    today = dt.datetime.now(dt.UTC).date()
    with psycopg.connect(store.admin_dsn, autocommit=True) as connection:
        ensure_partitions(connection, "otel_rag", today - dt.timedelta(days=10), today + dt.timedelta(days=2))
        ensure_partitions(connection, "otel_rag", today, today)  # idempotent
        days = {day for _, day in list_partitions(connection, "otel_rag")}
        assert {today - dt.timedelta(days=10), today, today + dt.timedelta(days=2)} <= days
        dropped = drop_partitions_before(connection, "otel_rag", today - dt.timedelta(days=7))
        assert sorted(dropped) == sorted(
            f"{table}_{(today - dt.timedelta(days=n)):%Y%m%d}" for table in ("logs", "spans") for n in range(8, 11)
        )
        remaining = {day for _, day in list_partitions(connection, "otel_rag")}
        assert min(remaining) == today - dt.timedelta(days=7)


def test_oldest_supported_version_postgres_15() -> None:
    server = start_server(DEBIAN_PG15)
    try:
        assert "15." in server.version()
        database = Database(server)
        assert migrate(database.admin_dsn) == []
        from otel_rag._store.writer import PostgresWriter, WriterOptions
        from tests.support.postgres import scratch_dir
        from tests.test_store_sink import emit_sample_trace

        writer = PostgresWriter(WriterOptions(dsn=database.dsn("rag_writer"), spool_dir=scratch_dir("spool-")))
        trace_id = emit_sample_trace(writer)
        assert writer.force_flush(10)
        writer.shutdown()
        from otel_rag._store.queries import debug_trace

        report = debug_trace(database.dsn("rag_reader"), trace_id)
        assert [span.name for span in report.spans] == ["upload", "parse", "embed"]
    finally:
        server.remove()


def test_the_embedded_servers_secret_files_are_private(pg_server: Any) -> None:
    """The superuser password (kept beside the data folder, and the one handed to initdb) and the server log are
    the owner's alone; the initdb password file is gone once the server is up."""
    import stat

    parent = pg_server.data_dir.parent
    modes = {
        path.name: stat.S_IMODE(path.stat().st_mode)
        for path in (parent / f"{pg_server.data_dir.name}.password", pg_server.log_path)
    }
    assert set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE(pg_server.data_dir.stat().st_mode) == 0o700
    assert not (parent / f".{pg_server.data_dir.name}.pw").exists()
