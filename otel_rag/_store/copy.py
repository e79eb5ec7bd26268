"""COPY a batch of rows into the logs and spans tables, in one transaction.

Plain COPY is the fast path. A batch retried after a commit whose outcome is unknown may meet rows already stored
(each row carries a client-generated key): that retry goes through a temporary staging table and
INSERT ... ON CONFLICT DO NOTHING, so the rows already there are skipped and the new ones added. Rows are produced
while the COPY streams (`to_row`), so the server indexes one part of the batch while the caller converts the next.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from otel_rag._store.rows import LOG_COLUMNS, SPAN_COLUMNS

__all__ = ["CONNECTION_ERRORS", "CONTENT_ERRORS", "TABLES", "copy_batch"]

TABLES = {"log": ("logs", LOG_COLUMNS), "span": ("spans", SPAN_COLUMNS)}
_STAGE_TYPES = {
    "time": "timestamptz",
    "end_time": "timestamptz",
    "duration_ms": "double precision",
    "record_id": "uuid",
    "severity_number": "smallint",
    "attributes": "jsonb",
    "events": "jsonb",
    "resource": "jsonb",
    "cost_usd": "numeric(18, 9)",
    "input_tokens": "integer",
    "output_tokens": "integer",
    "parent_remote": "boolean",
} | {
    column: "text"
    for column in (
        "trace_id",
        "span_id",
        "parent_span_id",
        "service_name",
        "user_id",
        "severity",
        "logger",
        "body",
        "name",
        "kind",
        "status",
        "status_message",
        "scope",
    )
}
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
# Errors about a row's content: the row is poison, the rest of the batch is fine. Any other error (privileges, a
# missing table, a server problem) is about the environment: retried and spooled like an outage, never dropped.
CONTENT_ERRORS = (psycopg.errors.DataError, psycopg.errors.IntegrityError)


def copy_batch(
    connection: psycopg.Connection[Any],
    schema: str,
    items: list[tuple[str, Any]],
    to_row: Callable[[str, Any], Any],
    staged: bool,
) -> None:
    """COPY `items` ((kind, record or row) pairs) in one transaction; each is replaced in `items` by its row.

    `to_row` returns a row tuple, or anything else for an item that cannot be stored (it is left out of the COPY).
    Raises psycopg's UniqueViolation when a plain COPY meets a stored row (then call again with `staged=True`).
    """
    schema_name = sql.Identifier(schema)
    with connection.transaction(), connection.cursor() as cursor:
        for kind, (table, columns) in TABLES.items():
            positions = [index for index, (item_kind, _) in enumerate(items) if item_kind == kind]
            if not positions:
                continue
            column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
            target = sql.SQL("{}.{}").format(schema_name, sql.Identifier(table))
            if staged:  # the writer may not SELECT the table, so the stage is declared, not LIKE'd
                stage = sql.Identifier(f"otel_rag_stage_{table}")
                cursor.execute(
                    sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                        stage,
                        sql.SQL(", ").join(
                            sql.SQL(f"{{}} {_STAGE_TYPES[c]}").format(sql.Identifier(c)) for c in columns
                        ),
                    )
                )
                copy_into: sql.Composable = stage
            else:
                copy_into = target
            with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(copy_into, column_list)) as copy:
                for index in positions:
                    row = to_row(kind, items[index][1])
                    items[index] = (kind, row)
                    if isinstance(row, tuple):
                        copy.write_row(row)
            if staged:
                cursor.execute(
                    sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
                        target, column_list, column_list, copy_into
                    )
                )
