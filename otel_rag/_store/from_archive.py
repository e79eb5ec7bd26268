"""The questions answered from the archive, for traces and days that have left Postgres.

Archived rows are loaded into temporary tables shaped like the store's (`pg_temp.spans`, `pg_temp.logs`, on the
caller's connection, so the reader role is enough), and the very same queries (queries.py) run on them with the
schema `pg_temp`: a trace read from the archive prints exactly as it did from Postgres. The manifest
(retention_objects) says which objects hold which days; pyarrow reads only the row groups whose statistics can hold
the trace or the time range.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from otel_rag._store import queries
from otel_rag._store.archive import Archive

__all__ = ["archive_boundary", "copy_rows", "load_logs", "load_trace", "search_logs", "temporary_store"]

TEMP_SCHEMA = "pg_temp"


@contextmanager
def temporary_store(connection: psycopg.Connection[Any], schema: str) -> Iterator[str]:
    """Empty `pg_temp.spans` and `pg_temp.logs` with the store's columns; yields the schema name to query."""
    for table in ("spans", "logs"):
        connection.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(table)))
        connection.execute(
            sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
                sql.Identifier(table), sql.Identifier(schema, table)
            )
        )
    try:
        yield TEMP_SCHEMA
    finally:
        if connection.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:  # else the error stands
            for table in ("spans", "logs"):
                connection.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(table)))


def _object_keys(
    connection: psycopg.Connection[Any], schema: str, signal: str, days: tuple[dt.date, dt.date] | None
) -> list[str]:
    query = sql.SQL("SELECT object_key FROM {} WHERE signal = %s").format(sql.Identifier(schema, "retention_objects"))
    params: list[Any] = [signal]
    if days is not None:
        query = sql.SQL("{} AND day BETWEEN %s AND %s").format(query)
        params += [days[0], days[1]]
    return [row[0] for row in connection.execute(query + sql.SQL(" ORDER BY day, part"), params).fetchall()]


def archive_boundary(connection: psycopg.Connection[Any], schema: str) -> dt.datetime | None:
    """The first instant from which Postgres holds every row again: midnight (UTC) after the newest day that was
    thinned or dropped (days leave Postgres oldest first, so every day before it is in the archive). None: no day
    has left Postgres."""
    row = connection.execute(
        sql.SQL("SELECT max(day) FROM {} WHERE state IN ('thinned', 'dropped')").format(
            sql.Identifier(schema, "retention_days")
        )
    ).fetchone()
    if not row or row[0] is None:
        return None
    return dt.datetime.combine(row[0] + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


def copy_rows(connection: psycopg.Connection[Any], table: str, rows: Any) -> int:
    """Arrow rows into a temporary table (jsonb columns arrive as JSON text and are parsed by Postgres)."""
    if rows.num_rows == 0:
        return 0
    columns = rows.column_names
    statement = sql.SQL("COPY pg_temp.{} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    )
    with connection.cursor().copy(statement) as copy:
        for batch in rows.to_batches():
            for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                copy.write_row(row)
    return int(rows.num_rows)


def load_trace(connection: psycopg.Connection[Any], schema: str, archive: Archive, trace_id: str) -> int:
    """Every archived row of one trace into the temporary store; the rows loaded."""
    import pyarrow.dataset as pads

    loaded = 0
    for signal in ("spans", "logs"):
        keys = _object_keys(connection, schema, signal, None)
        if keys:
            loaded += copy_rows(connection, signal, archive.scan(keys, pads.field("trace_id") == trace_id))
    return loaded


def load_logs(
    connection: psycopg.Connection[Any], schema: str, archive: Archive, start: dt.datetime, end: dt.datetime
) -> int:
    """The archived log lines of [start, end) into the temporary store; the rows loaded."""
    import pyarrow.dataset as pads

    keys = _object_keys(connection, schema, "logs", (start.astimezone(dt.UTC).date(), end.astimezone(dt.UTC).date()))
    if not keys:
        return 0
    predicate = (pads.field("time") >= start) & (pads.field("time") < end)
    return copy_rows(connection, "logs", archive.scan(keys, predicate))


def search_logs(
    connection: psycopg.Connection[Any],
    schema: str,
    archive: Archive | None,
    *,
    since: str | dt.datetime | None,
    until: str | dt.datetime | None,
    limit: int,
    **filters: str | None,
) -> tuple[list[queries.LogLine], dt.datetime | None]:
    """queries.search_logs over the archive and the store: the part of the range before the archive boundary (the
    days that have left Postgres, whole in the archive) is read from the archive, the rest from Postgres. Returns
    the lines, oldest first, and the boundary when the archive was read (None otherwise)."""
    start, end = queries.time_range(since, until)
    boundary = archive_boundary(connection, schema) if archive is not None else None
    lines: list[queries.LogLine] = []
    if archive is not None and boundary is not None and start < boundary:
        older_end = min(end, boundary)
        with temporary_store(connection, schema) as temporary:
            load_logs(connection, schema, archive, start, older_end)
            lines = queries.search_logs(
                connection, since=start, until=older_end, schema=temporary, limit=limit, **filters
            )
        start = older_end
    else:
        boundary = None
    if start < end and len(lines) < limit:
        lines += queries.search_logs(
            connection, since=start, until=end, schema=schema, limit=limit - len(lines), **filters
        )
    return lines, boundary
