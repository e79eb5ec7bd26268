"""`otel-rag quality`: the change-point test on its own, then the command on a real store with a planted drop.

The store holds three hours of answers in 10-minute buckets: 4 % hallucinated until 10:30, 23 % after; the stages
switch model, chunk size and deployed version at 10:30, and the prompt size grows. The command must name 10:30, the
rates on each side with their counts, a confidence, and those changes; a steady store must say no drop.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from otel_rag._store import queries
from otel_rag._store.quality import MIN_ANSWERS, Bucket, find_drop
from tests.support.plans import plan, real_seq_scans

START = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
TEN_MINUTES = dt.timedelta(minutes=10)


def _buckets(counts: list[tuple[int, int]]) -> list[Bucket]:
    return [Bucket(START + i * TEN_MINUTES, answers=n, hallucinated=k) for i, (n, k) in enumerate(counts)]


def test_a_rise_is_found_at_its_boundary_with_the_rates_on_each_side() -> None:
    drop, tried = find_drop(_buckets([(50, 2)] * 6 + [(50, 12)] * 6))
    assert drop is not None and tried == 11
    assert drop.at == START + 6 * TEN_MINUTES
    assert (drop.before_rate, drop.after_rate) == (12 / 300, 72 / 300)
    assert (drop.before_answers, drop.after_answers) == (300, 300)
    assert drop.confidence > 0.999


def test_noise_steady_rates_and_improvements_are_not_drops() -> None:
    rng = random.Random(5)
    steady = [(50, sum(rng.random() < 0.1 for _ in range(50))) for _ in range(24)]
    assert find_drop(_buckets(steady))[0] is None
    assert find_drop(_buckets([(50, 12)] * 6 + [(50, 2)] * 6))[0] is None  # quality got better
    assert find_drop(_buckets([(50, 0)] * 12))[0] is None


def test_too_few_answers_on_either_side_are_not_tried() -> None:
    drop, tried = find_drop(_buckets([(5, 0)] * 3 + [(5, 4)] * 3))  # 15 answers on each side at most
    assert (drop, tried) == (None, 0)
    drop, tried = find_drop(_buckets([(MIN_ANSWERS, 0), (MIN_ANSWERS, 15)]))
    assert tried == 1 and drop is not None


def test_the_correction_for_many_boundaries_keeps_a_borderline_rise_from_counting() -> None:
    """4 of 40 then 9 of 40 (10 % -> 22.5 %): one-sided p is about 0.06 at one boundary tried; never a drop."""
    assert find_drop(_buckets([(40, 4), (40, 9)]))[0] is None
    # the same rise, stronger: 4 of 200 then 30 of 200 is significant even after correcting over 9 boundaries
    assert find_drop(_buckets([(40, 1)] * 5 + [(40, 6)] * 5))[0] is not None


def test_buckets_are_read_as_durations() -> None:
    assert queries.parse_bucket("10m") == TEN_MINUTES and queries.parse_bucket("1d") == dt.timedelta(days=1)
    for bad in ("0m", "10", "ten minutes", "5y"):
        with pytest.raises(queries.InvalidInput, match="--bucket"):
            queries.parse_bucket(bad, "--bucket")


# -- the command on a real store ------------------------------------------------------------------------------------


def _seed(dsn: str, start: dt.datetime, *, drop_at: dt.datetime | None) -> None:
    """Three hours, 50 answers per 10 minutes, each with an evaluated generate stage."""
    from otel_rag._store.migrate import ensure_partitions

    rng = random.Random(11)
    with psycopg.connect(dsn, autocommit=True) as connection:
        ensure_partitions(connection, "otel_rag", start.date(), (start + dt.timedelta(hours=3)).date())
        for number in range(18 * 50):
            when = start + dt.timedelta(seconds=number * 12)
            after = drop_at is not None and when >= drop_at
            hallucinated = rng.random() < (0.23 if after else 0.04)
            trace_id = f"{number + 1:032x}"
            attributes = {
                "rag.stage": "generate",
                "gen_ai.request.model": "gpt-4o-nano" if after else "gpt-4o-mini",
                "rag.chunk.size": 120 if after else 60,
                "gen_ai.usage.input_tokens": 2500 if after else 700,
            }
            connection.execute(
                "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, service_name, name,"
                " kind, status, attributes, resource) VALUES (%s, %s, 900, %s, %s, 'rag-api', 'chat', 'CLIENT',"
                " 'UNSET', %s, %s)",
                (
                    when,
                    when,
                    trace_id,
                    f"{number + 1:016x}",
                    Jsonb(attributes),
                    Jsonb({"service.version": "1.1" if after else "1.0"}),
                ),
            )
            for name, value, label in (
                ("hallucination", 1.0 if hallucinated else 0.0, "hallucinated" if hallucinated else "grounded"),
                ("faithfulness", 0.5 if hallucinated else 0.9, "pass"),
            ):
                connection.execute(
                    "INSERT INTO otel_rag.logs (time, record_id, trace_id, service_name, severity, severity_number,"
                    " body, attributes) VALUES (%s, %s, %s, 'rag-api', 'INFO', 9, 'gen_ai.evaluation.result', %s)",
                    (
                        when,
                        uuid.uuid4(),
                        trace_id,
                        Jsonb(
                            {
                                "gen_ai.evaluation.name": name,
                                "gen_ai.evaluation.score.value": value,
                                "gen_ai.evaluation.score.label": label,
                            }
                        ),
                    ),
                )


def _quality(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from otel_rag._cli.main import main

    window = ["--since", START.isoformat(), "--until", (START + dt.timedelta(hours=3)).isoformat()]
    status = main(["quality", "--bucket", "10m", *window, *args])
    return status, capsys.readouterr().out


@pytest.mark.integration
def test_the_command_finds_the_planted_drop_and_what_changed_then(
    store: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    drop_at = START + dt.timedelta(minutes=90)
    _seed(store.dsn(), START, drop_at=drop_at)
    monkeypatch.setenv("OTEL_RAG_POSTGRES_DSN", store.dsn("rag_reader"))
    status, out = _quality(capsys, "--json")
    report = json.loads(out)
    assert status == 1
    assert len(report["buckets"]) == 18 and all(b["answers"] == 50 for b in report["buckets"])
    drop = report["drop"]
    assert dt.datetime.fromisoformat(drop["at"]) == drop_at
    assert drop["before_rate"] < 0.08 < 0.15 < drop["after_rate"] and drop["confidence"] > 0.999
    assert (drop["before_answers"], drop["after_answers"]) == (450, 450)
    changes = {change["what"]: change for change in report["changes"]}
    assert changes["model (generate)"]["before"] == {"gpt-4o-mini": 450} and changes["model (generate)"]["after"] == {
        "gpt-4o-nano": 450
    }
    assert changes["chunk size"]["before"] == {"60": 450} and changes["chunk size"]["after"] == {"120": 450}
    assert changes["service.version"]["after"] == {"1.1": 450}
    assert changes["prompt size"]["before"] == {"0-1023 tokens": 450}
    faithfulness = [b["scores"]["faithfulness"] for b in report["buckets"]]
    assert max(faithfulness[9:]) < min(faithfulness[:9])  # the other evaluations' means follow the drop
    status, text = _quality(capsys)
    assert status == 1
    assert f"quality dropped at {drop_at:%Y-%m-%d %H:%M}: hallucination" in text
    assert (
        "what changed then:" in text and "model (generate): before gpt-4o-mini (450); after gpt-4o-nano (450)" in text
    )


@pytest.mark.integration
def test_a_steady_store_has_no_drop_and_an_empty_one_not_enough_answers(
    store: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_RAG_POSTGRES_DSN", store.dsn("rag_reader"))
    status, text = _quality(capsys)
    assert status == 0 and "not enough answers to tell" in text
    _seed(store.dsn(), START, drop_at=None)
    status, text = _quality(capsys)
    assert status == 0 and "no drop detected (17 bucket boundaries with enough answers tried)" in text


@pytest.mark.integration
def test_the_quality_queries_read_the_window_through_the_indexes(store: Any) -> None:
    from otel_rag._store.quality import quality_sql

    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(store.admin_dsn, autocommit=True) as connection:
        connection.execute("SELECT otel_rag.ensure_partitions(current_date - 2, current_date + 1)")
        connection.execute(
            "INSERT INTO otel_rag.logs (time, record_id, trace_id, service_name, severity, severity_number, body,"
            " attributes) SELECT now() + interval '1 day' - (i * 1.44) * interval '1 s', gen_random_uuid(),"
            " md5(i::text), 'svc', 'info', 9, 'x', jsonb_build_object('gen_ai.evaluation.name', 'hallucination')"
            " FROM generate_series(1, 120000) i"
        )
        connection.execute(
            "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, service_name, name, kind,"
            " status, attributes) SELECT now() + interval '1 day' - (i * 1.44) * interval '1 s', now(), 1,"
            " md5(i::text), substr(md5(i::text), 1, 16), 'svc', 'op', 'INTERNAL', 'UNSET',"
            " jsonb_build_object('rag.stage', 'generate') FROM generate_series(1, 120000) i"
        )
        connection.execute("ANALYZE otel_rag.logs")
        connection.execute("ANALYZE otel_rag.spans")
    params = {"start": now - dt.timedelta(hours=1), "end": now, "bucket": TEN_MINUTES, "service": "svc", "at": now}
    for service in (False, True):
        for name, query in quality_sql("otel_rag", service).items():
            text = plan(store, query, params)
            scans = real_seq_scans(text)
            assert not scans, f"{name}:\n{text}"


def test_what_changed_is_what_most_requests_ran_with_stragglers_aside() -> None:
    from otel_rag._store.quality import _changes

    def row(after: bool, version: str, n: int, chunk: str = "60") -> dict[str, Any]:
        return {"after": after, "stage": "generate", "model": "m", "chunk_size": chunk, "version": version,
                "prompt_band": None, "n": n}  # fmt: skip

    # a deploy: a few requests of the new version before the boundary, a few of the old one after it
    rows = [row(False, "1.4.0", 95), row(False, "1.5.0", 5), row(True, "1.5.0", 90), row(True, "1.4.0", 10)]
    (change,) = _changes(rows)
    assert (change.what, change.before, change.after) == (
        "service.version",
        {"1.4.0": 95, "1.5.0": 5},
        {"1.5.0": 90, "1.4.0": 10},
    )
    # the same mix on both sides is no change, whatever the values
    assert (
        _changes([row(False, "1.4.0", 50), row(False, "1.5.0", 50), row(True, "1.4.0", 45), row(True, "1.5.0", 55)])
        == []
    )
