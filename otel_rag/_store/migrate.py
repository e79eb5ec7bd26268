"""Schema migrations and partition maintenance for the Postgres store.

`migrate()` applies the numbered SQL files in `migrations/` that are not yet recorded in
`<schema>.schema_migrations`, each in its own transaction, under a session advisory lock, so running it twice, or
from two processes at once, applies each file exactly once. `ensure_partitions()` creates the daily partitions
ahead; `drop_partitions_before()` detaches and drops whole days (retention without DELETE).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

__all__ = [
    "Migration",
    "available_migrations",
    "drop_partitions_before",
    "ensure_partitions",
    "list_partitions",
    "migrate",
    "validate_schema_name",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PARTITION_NAME = re.compile(r"^(logs|spans)_(\d{8})$")


def validate_schema_name(schema: str) -> str:
    """Schema names are used to build identifiers and role names: keep them to a safe, portable alphabet."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"schema name {schema!r} must match {_SCHEMA_NAME.pattern}")
    return schema


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def render(self, schema: str) -> str:
        """The SQL with the schema and role names substituted (validated, then quoted as identifiers)."""
        text = self.path.read_text()
        names = {
            "schema": _quote(schema),
            "schema_text": schema,
            "role_writer": _quote(f"{schema}_writer"),
            "role_reader": _quote(f"{schema}_reader"),
            "role_maintainer": _quote(f"{schema}_maintainer"),
        }
        return re.sub(r"\{(schema|schema_text|role_writer|role_reader|role_maintainer)\}", lambda m: names[m[1]], text)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def available_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} must be named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], path))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {directory}")
    return migrations


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"otel_rag.migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def migrate(dsn: str, schema: str = "otel_rag", directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations; return the ones applied by this call."""
    validate_schema_name(schema)
    applied_now: list[Migration] = []
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (_lock_key(schema),))
        try:
            ident = sql.Identifier(schema)
            connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            connection.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(ident)
            )
            done = {
                row[0]: row[1]
                for row in connection.execute(
                    sql.SQL("SELECT version, checksum FROM {}.schema_migrations").format(ident)
                )
            }
            for migration in available_migrations(directory):
                if migration.version in done:
                    continue
                with connection.transaction():
                    connection.execute(migration.render(schema).encode())
                    connection.execute(
                        sql.SQL(
                            "INSERT INTO {}.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"
                        ).format(ident),
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration)
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(schema),))
    return applied_now


def ensure_partitions(connection: psycopg.Connection[Any], schema: str, first_day: dt.date, last_day: dt.date) -> int:
    """Create the daily partitions for [first_day, last_day]; returns how many were created."""
    row = connection.execute(
        sql.SQL("SELECT {}.ensure_partitions(%s, %s)").format(sql.Identifier(schema)), (first_day, last_day)
    ).fetchone()
    return int(row[0]) if row else 0


def list_partitions(connection: psycopg.Connection[Any], schema: str) -> list[tuple[str, dt.date]]:
    """(table, day) of every daily partition, oldest first."""
    rows = connection.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE n.nspname = %s AND p.relname IN ('logs', 'spans')",
        (schema,),
    ).fetchall()
    partitions = []
    for (name,) in rows:
        match = _PARTITION_NAME.match(name)
        if match:
            partitions.append((name, dt.datetime.strptime(match[2], "%Y%m%d").date()))
    return sorted(partitions, key=lambda item: (item[1], item[0]))


def drop_partitions_before(connection: psycopg.Connection[Any], schema: str, before: dt.date) -> list[str]:
    """Detach and drop every daily partition whose day is before `before` (retention by whole days)."""
    dropped = []
    for name, day in list_partitions(connection, schema):
        if day >= before:
            continue
        parent = name.split("_", 1)[0]
        with connection.transaction():
            connection.execute(
                sql.SQL("ALTER TABLE {}.{} DETACH PARTITION {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(parent), sql.Identifier(schema), sql.Identifier(name)
                )
            )
            connection.execute(sql.SQL("DROP TABLE {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))
        dropped.append(name)
    return dropped
