"""The debug API behind the page's pictures, on a real store with a known shape: two hours of requests (ten a
minute, every twentieth failing, durations cycling 1..100 ms), an A/B of chunk size, a priced model call per request
whose model changes at 80 minutes, and a hallucination rate that rises from 4 % to 25 % at the same time."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

import otel_rag.web
from otel_rag._store.series import answers_sql, auto_bucket, series_sql
from otel_rag.web import DebugConfig
from tests.support.plans import plan, real_seq_scans, seed_two_days
from tests.support.postgres import Database

TOKEN = "charts-token-0123456789abcdef"
MINUTES, PER_MINUTE, SWITCH = 120, 10, 80


def _percentile(values: list[float], share: float) -> float:
    """percentile_cont, as Postgres computes it."""
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Shape:
    """What was written, to compare the answers with."""

    def __init__(self, store: Database) -> None:
        self.start = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).replace(second=0, microsecond=0)
        self.end = self.start + dt.timedelta(minutes=MINUTES)
        self.rows: list[dict[str, Any]] = []
        spans: list[tuple[Any, ...]] = []
        logs: list[tuple[Any, ...]] = []
        for i in range(MINUTES * PER_MINUTE):
            when = self.start + dt.timedelta(seconds=i * 60 / PER_MINUTE)
            after = i >= SWITCH * PER_MINUTE
            row = {
                "time": when,
                "trace_id": f"{i + 1:032x}",
                "duration_ms": float(i % 100 + 1),
                "failed": i % 20 == 0,
                "chunk": 60 if i % 2 == 0 else 120,
                "model": "gpt-4.1-nano" if after else "gpt-4o-mini",
                "cost": 0.0005 if after else 0.001,
                "hallucinated": i % 4 == 0 if after else i % 25 == 0,
            }
            self.rows.append(row)
            root = {"http.route": "/query", "rag.chunk.size": row["chunk"]}
            spans.append(
                (when, row["duration_ms"], row["trace_id"], f"{i + 1:016x}", None, "POST /query", "SERVER",
                 "ERROR" if row["failed"] else "UNSET", None, Jsonb(root))
            )  # fmt: skip
            call = {"rag.stage": "generate", "gen_ai.request.model": row["model"]}
            spans.append(
                (when, 1.0, row["trace_id"], f"{i + 1:08x}{'c' * 8}", f"{i + 1:016x}", "chat", "CLIENT", "UNSET",
                 row["cost"], Jsonb(call))
            )  # fmt: skip
            label = "hallucinated" if row["hallucinated"] else "grounded"
            evaluation = {
                "gen_ai.evaluation.name": "hallucination",
                "gen_ai.evaluation.score.label": label,
                "gen_ai.evaluation.score.value": 1.0 if row["hallucinated"] else 0.0,
                "gen_ai.evaluation.explanation": f"answer {i}",
            }
            logs.append((when, row["trace_id"], f"user-{i % 7}", Jsonb(evaluation)))
        with psycopg.connect(store.admin_dsn, autocommit=True) as connection:
            connection.execute("SELECT otel_rag.ensure_partitions(current_date - 1, current_date + 1)")
            with connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, parent_span_id,"
                    " service_name, name, kind, status, cost_usd, attributes)"
                    " VALUES (%s, %s, %s, %s, %s, %s, 'rag-api', %s, %s, %s, %s, %s)",
                    [(s[0], s[0], *s[1:]) for s in spans],
                )
                cursor.executemany(
                    "INSERT INTO otel_rag.logs (time, record_id, trace_id, service_name, user_id, severity,"
                    " severity_number, attributes) VALUES (%s, gen_random_uuid(), %s, 'rag-api', %s, 'info', 9, %s)",
                    logs,
                )

    def window(self, start_minute: int = 0, end_minute: int = MINUTES) -> dict[str, str]:
        return {
            "since": (self.start + dt.timedelta(minutes=start_minute)).isoformat(),
            "until": (self.start + dt.timedelta(minutes=end_minute)).isoformat(),
        }


@pytest.fixture(scope="module")
def shaped(pg_server: Any) -> tuple[TestClient, Shape]:
    store = Database(pg_server)
    shape = Shape(store)
    app = FastAPI()
    app.state.otel_rag_debug = DebugConfig(dsn=store.dsn("rag_reader"), token=TOKEN)
    app.include_router(otel_rag.web.router)
    return TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}), shape


def test_requests_errors_p95_and_cost_per_bucket(shaped: tuple[TestClient, Shape]) -> None:
    client, shape = shaped
    answer = client.get("/debug/api/series", params={**shape.window(), "bucket": "10m"}).json()
    assert answer["bucket_seconds"] == 600 and answer["models"] == ["gpt-4.1-nano", "gpt-4o-mini"]
    assert len(answer["points"]) == 12
    for number, point in enumerate(answer["points"]):
        rows = shape.rows[number * 100 : (number + 1) * 100]
        assert dt.datetime.fromisoformat(point["start"]) == shape.start + dt.timedelta(minutes=10 * number)
        assert (point["requests"], point["errors"]) == (100, sum(r["failed"] for r in rows))
        assert point["p95_ms"] == pytest.approx(_percentile([r["duration_ms"] for r in rows], 0.95))
        by_model: dict[str, float] = {}
        for row in rows:
            by_model[row["model"]] = by_model.get(row["model"], 0.0) + row["cost"]
        assert point["cost_usd"] == pytest.approx(by_model)


def test_the_bucket_is_chosen_for_the_window_and_empty_buckets_are_zero(shaped: tuple[TestClient, Shape]) -> None:
    client, shape = shaped
    answer = client.get("/debug/api/series", params=shape.window()).json()
    assert answer["bucket_seconds"] == 60 and len(answer["points"]) == 120  # two hours in at most 120 points
    later = client.get("/debug/api/series", params=shape.window(MINUTES, MINUTES + 30)).json()
    assert {(p["requests"], p["errors"], p["p95_ms"]) for p in later["points"]} == {(0, 0, None)}
    assert auto_bucket(shape.start, shape.start + dt.timedelta(days=7)) == dt.timedelta(hours=3)
    assert auto_bucket(shape.start, shape.start + dt.timedelta(days=365)) == dt.timedelta(seconds=262800)


def test_the_quality_trend_marks_the_drop_and_what_changed(shaped: tuple[TestClient, Shape]) -> None:
    client, shape = shaped
    answer = client.get("/debug/api/quality", params={**shape.window(), "bucket": "10m"}).json()
    assert len(answer["buckets"]) == 12 and answer["buckets"][0]["answers"] == 100
    assert dt.datetime.fromisoformat(answer["drop"]["at"]) == shape.start + dt.timedelta(minutes=SWITCH)
    assert answer["drop"]["before_rate"] == pytest.approx(0.04) and answer["drop"]["after_rate"] == pytest.approx(0.25)
    changes = {change["what"]: change for change in answer["changes"]}
    assert changes["model (generate)"]["after"] == {"gpt-4.1-nano": 400}


def test_the_health_strip_has_the_verdict_and_its_reasons(shaped: tuple[TestClient, Shape]) -> None:
    client, shape = shaped
    answer = client.get("/debug/api/health", params=shape.window()).json()
    assert (answer["requests"], answer["errors"], answer["answers"]) == (1200, 60, 1200)
    assert answer["hallucinations"] == sum(r["hallucinated"] for r in shape.rows) == 132
    assert answer["status"] == "DEGRADED" and answer["reasons"] == ["hallucinations 11.0% of 1200 answers (over 10 %)"]
    assert answer["cost_per_hour_usd"] == pytest.approx(sum(r["cost"] for r in shape.rows) / 2)
    before = client.get("/debug/api/health", params=shape.window(0, SWITCH)).json()
    assert before["status"] == "HEALTHY" and before["reasons"] == []


def test_compare_shows_each_group_with_its_distribution(shaped: tuple[TestClient, Shape]) -> None:
    client, shape = shaped
    answer = client.get("/debug/api/compare", params={**shape.window(), "by": "rag.chunk.size"}).json()
    assert answer["by"] == "rag.chunk.size"
    groups = {group["name"]: group for group in answer["groups"]}
    assert set(groups) == {"60", "120"}
    for name, group in groups.items():
        latencies = [r["duration_ms"] for r in shape.rows if str(r["chunk"]) == name]
        assert group["n"] == 600 and len(group["latency_quantiles_ms"]) == 21
        assert group["latency_quantiles_ms"][0] == min(latencies) and group["latency_quantiles_ms"][-1] == max(
            latencies
        )
        assert group["latency_quantiles_ms"] == sorted(group["latency_quantiles_ms"])
    (comparison,) = answer["comparisons"]
    assert comparison["enough_data"] and {d["metric"] for d in comparison["differences"]} >= {"p95 latency"}
    assert comparison["verdict"].startswith("rag.chunk.size 120 vs 60: p95 ")  # the terminal's line, word for word
    at = (shape.start + dt.timedelta(minutes=SWITCH)).isoformat()
    by_time = client.get("/debug/api/compare", params={**shape.window(), "before": at, "after": at}).json()
    assert by_time["by"] == "time" and {g["name"]: g["n"] for g in by_time["groups"]} == {"before": 800, "after": 400}


def test_the_hallucinated_answers_behind_a_point(shaped: tuple[TestClient, Shape]) -> None:
    client, shape = shaped
    answer = client.get("/debug/api/answers", params=shape.window(SWITCH, SWITCH + 10)).json()
    expected = [r for r in shape.rows[SWITCH * 10 : (SWITCH + 10) * 10] if r["hallucinated"]]
    assert [a["trace_id"] for a in answer] == [r["trace_id"] for r in reversed(expected)]  # newest first
    assert {a["label"] for a in answer} == {"hallucinated"} and answer[0]["explanation"].startswith("answer ")
    grounded = client.get("/debug/api/answers", params={**shape.window(0, 10), "label": "grounded", "limit": "5"})
    assert len(grounded.json()) == 5


def test_the_chart_queries_read_the_window_through_the_indexes(store: Database) -> None:
    seed_two_days(store)
    now = dt.datetime.now(dt.UTC)
    params = {
        "start": now - dt.timedelta(hours=1),
        "end": now,
        "bucket": dt.timedelta(minutes=1),
        "service": "svc",
        "label": "hallucinated",
        "limit": 50,
    }
    for service in (False, True):
        for name, query in series_sql("otel_rag", service).items():
            text = plan(store, query, params)
            assert not real_seq_scans(text), f"{name}:\n{text}"
    text = plan(store, answers_sql("otel_rag"), params)
    assert not real_seq_scans(text), text
