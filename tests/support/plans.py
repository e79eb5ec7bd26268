"""Query plans for the tests that check a query reads through the indexes (EXPLAIN, as the reader role)."""

from __future__ import annotations

from typing import Any

import psycopg

__all__ = ["plan", "real_seq_scans"]


def plan(store: Any, query: Any, params: Any) -> str:
    """EXPLAIN of a composed query with these parameters, as the reader role sees it."""
    with psycopg.connect(store.dsn("rag_reader")) as connection:
        rendered = query.as_string(connection)
        rows = connection.execute(("EXPLAIN " + rendered).encode(), params).fetchall()
    return "\n".join(row[0] for row in rows)


def real_seq_scans(text: str) -> list[str]:
    """Sequential scans other than of empty partitions (cost 0..0, which the planner reads for free)."""
    return [line for line in text.splitlines() if "Seq Scan" in line and "cost=0.00..0.00" not in line]
