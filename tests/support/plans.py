"""Query plans for the tests that check a query reads through the indexes (EXPLAIN, as the reader role)."""

from __future__ import annotations

from typing import Any

import psycopg

__all__ = ["plan", "real_seq_scans", "seed_two_days"]


def plan(store: Any, query: Any, params: Any) -> str:
    """EXPLAIN of a composed query with these parameters, as the reader role sees it."""
    with psycopg.connect(store.dsn("rag_reader")) as connection:
        rendered = query.as_string(connection)
        rows = connection.execute(("EXPLAIN " + rendered).encode(), params).fetchall()
    return "\n".join(row[0] for row in rows)


def real_seq_scans(text: str) -> list[str]:
    """Sequential scans other than of empty partitions (cost 0..0, which the planner reads for free)."""
    return [line for line in text.splitlines() if "Seq Scan" in line and "cost=0.00..0.00" not in line]


def seed_two_days(store: Any) -> None:
    """120k spans (a tenth of them request roots, each with a priced model call) and 120k evaluation log lines
    over the 48 hours around now: enough rows for the planner to prefer the indexes, whatever the time of day."""
    with psycopg.connect(store.admin_dsn, autocommit=True) as connection:
        connection.execute("SELECT otel_rag.ensure_partitions(current_date - 2, current_date + 1)")
        connection.execute(
            "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, parent_span_id,"
            " parent_remote, service_name, name, kind, status, cost_usd, attributes) SELECT now() + interval '1 day'"
            " - (i * 1.44) * interval '1 s', now(), 1.0, md5((i / 10)::text), substr(md5(i::text), 1, 16),"
            " CASE WHEN i % 10 = 0 THEN NULL ELSE 'p' END, CASE WHEN i % 10 = 0 THEN false END, 'svc', 'op',"
            " CASE WHEN i % 10 = 0 THEN 'SERVER' ELSE 'INTERNAL' END, 'UNSET', 0.001,"
            " jsonb_build_object('rag.stage', 'generate', 'gen_ai.request.model', 'm' || (i % 3))"
            " FROM generate_series(1, 120000) i"
        )
        connection.execute(
            "INSERT INTO otel_rag.logs (time, record_id, trace_id, service_name, severity, severity_number, body,"
            " attributes) SELECT now() + interval '1 day' - (i * 1.44) * interval '1 s', gen_random_uuid(),"
            " md5((i / 10)::text), 'svc', 'info', 9, 'line', jsonb_build_object('gen_ai.evaluation.name',"
            " 'hallucination', 'gen_ai.evaluation.score.label', CASE WHEN i % 9 = 0 THEN 'hallucinated'"
            " ELSE 'grounded' END) FROM generate_series(1, 120000) i"
        )
        connection.execute("ANALYZE otel_rag.spans")
        connection.execute("ANALYZE otel_rag.logs")
