"""`otel-rag compare`: the groups' figures and bootstrap intervals on their own, then the command on a real store
where chunk size 120 is slower, dearer and hallucinates less than chunk size 60."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from otel_rag._store.compare import Request, compare_groups, verdict
from tests.support.plans import plan, real_seq_scans


def _requests(
    group: str, n: int, latency: float, *, cost: float = 0.001, rate: float = 0.1, seed: int = 1
) -> list[Request]:
    rng = random.Random(seed)
    return [
        Request(group, [latency * rng.lognormvariate(0, 0.3)], cost, 500, False, 1, int(rng.random() < rate))
        for _ in range(n)
    ]


def test_a_real_difference_has_an_interval_that_excludes_nothing_changed() -> None:
    requests = _requests("60", 300, 1000, rate=0.10) + _requests("120", 300, 1200, cost=0.0013, rate=0.05, seed=2)
    groups, (comparison,) = compare_groups(requests)
    assert [g.name for g in groups] == ["60", "120"]  # numbers in numeric order
    assert comparison.group == "120" and comparison.baseline in ("60", "120") and comparison.enough_data
    figures = {d.metric: d for d in comparison.differences}
    p95 = figures["p95 latency"]
    assert p95.change == pytest.approx(0.2, abs=0.05) and p95.low is not None and p95.low > 0
    cost = figures["cost per request"]
    assert cost.change == pytest.approx(0.3)
    hallucination = figures["hallucination rate"]
    assert hallucination.change is not None and hallucination.change < 0 and not hallucination.relative
    line = verdict("chunk", comparison)
    assert line.startswith("chunk 120 vs 60: p95 +") and "hallucination -" in line and "cost +30%" in line


def test_no_difference_has_an_interval_around_zero_and_small_groups_say_so() -> None:
    same = _requests("a", 400, 1000, seed=3) + _requests("b", 300, 1000, seed=4)
    _, (comparison,) = compare_groups(same)
    p95 = next(d for d in comparison.differences if d.metric == "p95 latency")
    assert p95.low is not None and p95.high is not None and p95.low < 0 < p95.high
    assert comparison.baseline == "a"  # the largest group
    small = _requests("a", 200, 1000) + _requests("b", 12, 3000)
    _, (few,) = compare_groups(small)
    assert not few.enough_data and all(d.low is None for d in few.differences)
    assert verdict("x", few) == "x b vs a: not enough data (fewer than 30 requests in a group)"
    first = compare_groups(same)[1][0].differences
    assert compare_groups(same)[1][0].differences == first  # seeded: the same store gives the same answer


# -- the command on a real store ------------------------------------------------------------------------------------


def _seed(dsn: str, start: dt.datetime) -> dict[str, list[float]]:
    """200 questions with chunk size 60, then 200 with 120; returns the root durations by chunk size."""
    from otel_rag._store.migrate import ensure_partitions

    rng = random.Random(9)
    durations: dict[str, list[float]] = {"60": [], "120": []}
    with psycopg.connect(dsn, autocommit=True) as connection:
        ensure_partitions(connection, "otel_rag", start.date(), (start + dt.timedelta(hours=2)).date())
        for number in range(400):
            chunk = "60" if number < 200 else "120"
            when = start + dt.timedelta(seconds=number * 15)
            root_ms = rng.uniform(800, 1200) * (1.25 if chunk == "120" else 1.0)
            durations[chunk].append(root_ms)
            trace_id, root = f"{number + 1:032x}", f"{number + 1:016x}"
            hallucinated = rng.random() < (0.05 if chunk == "120" else 0.15)
            connection.execute(
                "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, parent_remote,"
                " service_name, name, kind, status, attributes, resource) VALUES (%s, %s, %s, %s, %s, false,"
                " 'rag-api', 'POST /ask', 'SERVER', %s, %s, %s)",
                (
                    when,
                    when,
                    root_ms,
                    trace_id,
                    root,
                    "ERROR" if number % 50 == 0 else "UNSET",
                    Jsonb({"http.route": "/ask"}),
                    Jsonb({"service.version": "1.0" if number < 300 else "1.1"}),
                ),
            )
            for stage, ms, cost in (
                ("retrieve", 40.0, None),
                ("generate", root_ms * 0.8, 0.002 if chunk == "60" else 0.003),
            ):
                connection.execute(
                    "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, parent_span_id,"
                    " service_name, name, kind, status, attributes, cost_usd, input_tokens, output_tokens)"
                    " VALUES (%s, %s, %s, %s, %s, %s, 'rag-api', %s, 'INTERNAL', 'UNSET', %s, %s, %s, %s)",
                    (
                        when,
                        when,
                        ms,
                        trace_id,
                        f"{stage[0]}{number + 1:015x}",
                        root,
                        stage,
                        Jsonb({"rag.stage": stage, "rag.chunk.size": int(chunk)}),
                        cost,
                        300 if cost else None,
                        100 if cost else None,
                    ),
                )
            connection.execute(
                "INSERT INTO otel_rag.logs (time, record_id, trace_id, service_name, severity, severity_number, body,"
                " attributes) VALUES (%s, %s, %s, 'rag-api', 'INFO', 9, 'gen_ai.evaluation.result', %s)",
                (
                    when,
                    uuid.uuid4(),
                    trace_id,
                    Jsonb(
                        {
                            "gen_ai.evaluation.name": "hallucination",
                            "gen_ai.evaluation.score.label": "hallucinated" if hallucinated else "grounded",
                        }
                    ),
                ),
            )
    return durations


START = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
WINDOW = ["--since", START.isoformat(), "--until", (START + dt.timedelta(hours=2)).isoformat()]


def _compare(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from otel_rag._cli.main import main

    status = main(["compare", *args, *WINDOW])
    return status, capsys.readouterr().out


@pytest.mark.integration
def test_the_command_compares_chunk_sizes_stages_versions_and_times(
    store: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from otel_rag._store.compare import _percentile

    durations = _seed(store.dsn(), START)
    monkeypatch.setenv("OTEL_RAG_POSTGRES_DSN", store.dsn("rag_reader"))
    status, out = _compare(capsys, "--by", "rag.chunk.size", "--json")
    assert status == 0
    report = json.loads(out)
    groups = {group["name"]: group for group in report["groups"]}
    assert (groups["60"]["n"], groups["120"]["n"]) == (200, 200)
    assert groups["120"]["p95_ms"] == pytest.approx(_percentile(durations["120"], 0.95))
    assert groups["60"]["cost_per_request"] == pytest.approx(0.002)
    assert groups["60"]["tokens_per_request"] == 400 and groups["60"]["error_rate"] == pytest.approx(4 / 200)
    (comparison,) = report["comparisons"]
    p95 = next(d for d in comparison["differences"] if d["metric"] == "p95 latency")
    assert p95["low"] > 0.1 and p95["change"] == pytest.approx(0.25, abs=0.06)
    hallucination = next(d for d in comparison["differences"] if d["metric"] == "hallucination rate")
    assert hallucination["high"] < 0  # fewer hallucinations with bigger chunks, with confidence
    status, text = _compare(capsys, "--by", "rag.chunk.size", "--baseline", "60")
    assert status == 0 and "rag.chunk.size 120 vs 60: p95 +" in text and "cost +50%" in text
    status, out = _compare(capsys, "--by", "rag.chunk.size", "--stage", "retrieve", "--json")
    stage_groups = {group["name"]: group for group in json.loads(out)["groups"]}
    assert stage_groups["60"]["p50_ms"] == 40.0  # the stage's own spans, not the request
    status, out = _compare(capsys, "--by", "service.version", "--json")  # a resource attribute
    assert {g["name"]: g["n"] for g in json.loads(out)["groups"]} == {"1.0": 300, "1.1": 100}
    split = (START + dt.timedelta(seconds=200 * 15)).isoformat()
    status, out = _compare(capsys, "--before", split, "--after", split, "--json")
    by_time = json.loads(out)
    assert {g["name"]: g["n"] for g in by_time["groups"]} == {"after": 200, "before": 200}
    assert by_time["comparisons"][0]["baseline"] == "before"
    status, text = _compare(capsys, "--by", "no.such.attribute")
    assert status == 1 and "nothing to compare" in text


@pytest.mark.integration
def test_bad_requests_are_refused(
    store: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from otel_rag._cli.main import main

    monkeypatch.setenv("OTEL_RAG_POSTGRES_DSN", store.dsn("rag_reader"))
    assert main(["compare", *WINDOW]) == 2
    assert main(["compare", "--by", "x", "--before", "10:00", *WINDOW]) == 2
    assert "--by ATTRIBUTE, or --before" in capsys.readouterr().err


@pytest.mark.integration
def test_the_compare_query_reads_the_window_through_the_indexes(store: Any) -> None:
    from otel_rag._store.compare import compare_sql

    with psycopg.connect(store.admin_dsn, autocommit=True) as connection:
        connection.execute("SELECT otel_rag.ensure_partitions(current_date - 2, current_date + 1)")
        connection.execute(
            "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, service_name, name, kind,"
            " status, attributes) SELECT now() + interval '1 day' - (i * 1.44) * interval '1 s', now(), 1,"
            " md5((i / 5)::text), substr(md5(i::text), 1, 16), 'svc', 'op', 'INTERNAL', 'UNSET',"
            " jsonb_build_object('rag.chunk.size', i % 3) FROM generate_series(1, 120000) i"
        )
        connection.execute(
            "INSERT INTO otel_rag.logs (time, record_id, trace_id, service_name, severity, severity_number, body)"
            " SELECT now() + interval '1 day' - (i * 1.44) * interval '1 s', gen_random_uuid(),"
            " md5((i / 5)::text), 'svc', 'info', 9, 'x' FROM generate_series(1, 120000) i"
        )
        connection.execute("ANALYZE otel_rag.spans")
        connection.execute("ANALYZE otel_rag.logs")
    now = dt.datetime.now(dt.UTC)
    params = {
        "start": now - dt.timedelta(hours=1),
        "end": now,
        "attribute": "rag.chunk.size",
        "stage": "generate",
        "before": now - dt.timedelta(minutes=30),
        "after": now - dt.timedelta(minutes=30),
    }
    for by_time in (False, True):
        for stage in (False, True):
            query = compare_sql("otel_rag", resource=False, stage=stage, by_time=by_time)
            text = plan(store, query, params)
            scans = real_seq_scans(text)
            assert not scans, text
