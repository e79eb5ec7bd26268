"""The log lifecycle on a real PostgreSQL with a real archive: 40 seeded days, one run, then every promise checked.

Hot days untouched; warm days hold exactly the warm set (whole traces); older days gone from Postgres; every day's
every row in the archive, once; a second run changes nothing; rows that arrive late are archived before anything
leaves; the maintainer role is enough and the others are refused; a dry run changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
import pytest
from psycopg import sql

from otel_rag._store.archive import Archive
from otel_rag._store.retention import SIGNALS, AlreadyRunning, Policy, run, sampler_bound
from tests.support.retention_seed import Seeded, expected_warm, sampled, seed
from tests.support.stack import S3Server


def mock_env(env: dict[str, str]) -> Any:
    """The AWS_* variables of the test's S3 for an Archive built in this process."""
    return mock.patch.dict(os.environ, env)


pytestmark = pytest.mark.integration  # real PostgreSQL servers, S3, CLI processes: `make test`, not `make check`

TODAY = dt.date(2026, 11, 30)
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
POLICY = Policy(hot_days=7, warm_days=30, warm_sample_ratio=0.1, archive_days=365)


def _rows(store: Any, signal: str, day: dt.date) -> list[tuple[Any, ...]]:
    key = "record_id::text" if signal == "logs" else "span_id"
    with psycopg.connect(store.dsn()) as connection:
        exists = connection.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"otel_rag.{signal}_{day:%Y%m%d}",)
        ).fetchone()
        if not exists or not exists[0]:
            return []
        return connection.execute(
            sql.SQL("SELECT trace_id, {} FROM {}").format(
                sql.SQL(key), sql.Identifier("otel_rag", f"{signal}_{day:%Y%m%d}")
            )
        ).fetchall()


def _archived(store: Any, archive: Archive, signal: str, day: dt.date) -> list[tuple[Any, ...]]:
    id_column = "record_id" if signal == "logs" else "span_id"
    with psycopg.connect(store.dsn()) as connection:
        keys = connection.execute(
            "SELECT object_key FROM otel_rag.retention_objects WHERE day = %s AND signal = %s ORDER BY part",
            (day, signal),
        ).fetchall()
    rows: list[tuple[Any, ...]] = []
    for (key,) in keys:
        table = archive.read_keys(key, id_column)
        rows.extend(zip(table.column("trace_id").to_pylist(), table.column(id_column).to_pylist(), strict=True))
    return rows


def _seeded_keys(seeded: Seeded, signal: str, day: dt.date) -> Counter[tuple[Any, ...]]:
    if signal == "logs":
        return Counter((row["trace_id"], str(row["record_id"])) for row in seeded.logs[day])
    return Counter((row["trace_id"], row["span_id"]) for row in seeded.spans[day])


@pytest.fixture
def seeded_store(store: Any, tmp_path: Path) -> tuple[Any, Seeded, Archive]:
    seeded = seed(store.dsn(), TODAY)
    return store, seeded, Archive(f"file://{tmp_path}/archive")


def test_one_run_leaves_hot_days_whole_warm_days_thinned_to_whole_interesting_traces_and_old_days_archived(
    seeded_store: tuple[Any, Seeded, Archive],
) -> None:
    _one_run_keeps_every_promise(*seeded_store)


def test_the_oldest_supported_postgres_15_runs_it_the_same(tmp_path: Path) -> None:
    from tests.support.postgres import DEBIAN_PG15, Database, start_server

    server = start_server(DEBIAN_PG15)
    try:
        assert "15." in server.version()
        store = Database(server)
        _one_run_keeps_every_promise(store, seed(store.dsn(), TODAY), Archive(f"file://{tmp_path}/archive"))
    finally:
        server.remove()


def _one_run_keeps_every_promise(store: Any, seeded: Seeded, archive: Archive) -> None:
    report = run(store.dsn("rag_maint"), "otel_rag", POLICY, archive, NOW)
    old_days = [day for day in {*seeded.spans, *seeded.logs} if (TODAY - day).days >= 7]  # day 40 holds one root
    assert report.archived_rows == sum(len(seeded.spans[d]) + len(seeded.logs[d]) for d in old_days)
    for age in range(40):
        day = TODAY - dt.timedelta(days=age)
        for signal in SIGNALS:
            stored = Counter(_rows(store, signal, day))
            if age < 7:
                assert stored == _seeded_keys(seeded, signal, day), f"hot day {day} changed"
                continue
            assert Counter(_archived(store, archive, signal, day)) == _seeded_keys(seeded, signal, day), day
            if age >= 30:
                assert not stored, f"{day} should have left Postgres"
                continue
            keep, kept_lines = expected_warm(seeded, day, POLICY.warm_sample_ratio)
            expected = Counter({key: n for key, n in _seeded_keys(seeded, signal, day).items() if key[0] in keep})
            in_traces = Counter({key: n for key, n in stored.items() if key[0] is not None})
            assert in_traces == expected, f"{signal} of {day}: not exactly the warm set's whole traces"
            if signal == "logs":
                assert sum(n for key, n in stored.items() if key[0] is None) == kept_lines
    for day in _days(7, 30):  # the interesting ones are all there, and the sample is a sample
        stored_traces = {trace for trace, _ in _rows(store, "spans", day)}
        assert seeded.interesting[day] <= stored_traces
        assert len(stored_traces) < len(seeded.traces(day)) * 0.5


def test_a_second_run_changes_nothing_and_late_rows_are_archived_once_before_they_leave(
    seeded_store: tuple[Any, Seeded, Archive],
) -> None:
    store, _, archive = seeded_store
    dsn = store.dsn("rag_maint")
    run(dsn, "otel_rag", POLICY, archive, NOW)
    again = run(dsn, "otel_rag", POLICY, archive, NOW)
    assert (again.archived_rows, again.thinned_rows, again.dropped_rows) == (0, 0, 0)

    # records replayed from a spool land in a thinned day and in a day that is about to be dropped
    warm_day, cold_day = TODAY - dt.timedelta(days=10), TODAY - dt.timedelta(days=29)
    late: dict[dt.date, list[str]] = {warm_day: [], cold_day: []}
    with psycopg.connect(store.dsn(), autocommit=True) as connection:
        for day, traces in late.items():
            for number in range(3):
                trace_id = f"{random.getrandbits(128):032x}"
                traces.append(trace_id)
                connection.execute(
                    "INSERT INTO otel_rag.spans (time, end_time, duration_ms, trace_id, span_id, service_name, name,"
                    " kind, status) VALUES (%s, %s, 1, %s, %s, 'rag-api', 'late', 'INTERNAL', 'ERROR')",
                    (
                        dt.datetime.combine(day, dt.time(15, number), tzinfo=dt.UTC),
                        dt.datetime.combine(day, dt.time(15, number), tzinfo=dt.UTC),
                        trace_id,
                        f"{number:016x}",
                    ),
                )
    later = run(dsn, "otel_rag", POLICY, archive, NOW + dt.timedelta(days=1))
    assert later.archived_rows >= 6
    for day, traces in late.items():
        archived = Counter(_archived(store, archive, "spans", day))
        assert max(archived.values()) == 1, "a row archived twice"
        assert {trace for trace, _ in archived} >= set(traces)
    # the warm day kept its late error traces; the cold one left Postgres with them archived
    assert set(late[warm_day]) <= {trace for trace, _ in _rows(store, "spans", warm_day)}
    assert _rows(store, "spans", cold_day) == []


def test_a_dry_run_changes_nothing_and_says_what_a_run_would_keep(seeded_store: tuple[Any, Seeded, Archive]) -> None:
    store, seeded, archive = seeded_store
    before = {(s, d): Counter(_rows(store, s, d)) for s in SIGNALS for d in _days(0, 40)}
    report = run(store.dsn("rag_maint"), "otel_rag", POLICY, archive, NOW, dry_run=True)
    assert {(s, d): Counter(_rows(store, s, d)) for s in SIGNALS for d in _days(0, 40)} == before
    assert store.scalar("SELECT count(*) FROM otel_rag.retention_objects") == 0
    plans = {day.day: day for day in report.days}
    assert {plans[d].action for d in _days(0, 7)} == {"none"}
    assert {plans[d].action for d in _days(7, 30)} == {"archive+thin"}
    assert {plans[d].action for d in _days(30, 40)} == {"archive+drop"}
    day = TODAY - dt.timedelta(days=12)
    keep, kept_lines = expected_warm(seeded, day, POLICY.warm_sample_ratio)
    kept_rows = sum(1 for row in seeded.spans[day] if row["trace_id"] in keep)
    kept_rows += sum(1 for row in seeded.logs[day] if row["trace_id"] in keep) + kept_lines
    assert plans[day].rows_kept == kept_rows
    assert all(plans[d].bytes_freed == plans[d].bytes > 0 for d in _days(30, 40))
    assert 0 < (plans[day].bytes_freed or 0) < plans[day].bytes
    assert report.bytes_freed == sum(p.bytes_freed or 0 for p in report.days)


def test_the_commands_say_what_is_due_what_was_done_and_where_each_day_stands(
    seeded_store: tuple[Any, Seeded, Archive], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from otel_rag._cli.main import main

    store, _, archive = seeded_store
    monkeypatch.setenv("OTEL_RAG_POSTGRES_DSN", store.dsn("rag_maint"))
    now = ["--now", NOW.isoformat()]
    assert main(["retention", "run", "--dry-run", *now]) == 2  # days are due and no archive is configured
    assert "OTEL_RAG_ARCHIVE_URL" in capsys.readouterr().err
    monkeypatch.setenv("OTEL_RAG_ARCHIVE_URL", archive.url)
    assert main(["retention", "run", "--dry-run", *now]) == 0
    plan = capsys.readouterr().out
    assert "retention (would do): 35 of 43 days due" in plan and "would free about" in plan
    assert f"{TODAY - dt.timedelta(days=12)}  warm    archive+thin" in plan
    assert main(["retention", "run", *now]) == 0
    done = capsys.readouterr()
    assert "retention (done)" in done.out and "archived 7" in done.out
    assert f"[1/35] {TODAY - dt.timedelta(days=41)}" in done.err  # progress, oldest day first
    assert main(["retention", "status", *now]) == 0
    status = capsys.readouterr().out
    assert f"{TODAY - dt.timedelta(days=12)}  warm" in status and "thinned/thinned" in status
    assert f"{TODAY - dt.timedelta(days=3)}  hot" in status and "last run:" in status and ", ok" in status
    assert main(["retention", "run", "--now", "yesterday"]) == 2


def test_only_the_maintainer_role_can_run_it_and_two_runs_never_overlap(
    seeded_store: tuple[Any, Seeded, Archive],
) -> None:
    store, _, archive = seeded_store
    for role in ("rag_writer", "rag_reader"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            run(store.dsn(role), "otel_rag", POLICY, archive, NOW)
    with psycopg.connect(store.dsn(), autocommit=True) as holder:
        from otel_rag._store.retention import _lock_key

        holder.execute("SELECT pg_advisory_lock(%s)", (_lock_key("otel_rag"),))
        with pytest.raises(AlreadyRunning):
            run(store.dsn("rag_maint"), "otel_rag", POLICY, archive, NOW)
    assert store.scalar("SELECT count(*) FROM otel_rag.retention_objects") == 0


def test_the_sql_sampler_decides_as_the_sdks_trace_id_ratio_sampler(store: Any) -> None:
    from otel_rag._store.retention_steps import SAMPLED_SQL

    rng = random.Random(3)
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(2000)]
    for ratio in (0.0, 0.1, 0.5, 1.0, 1e-9):
        bound = sampler_bound(ratio)
        ids_at_edge = [f"{'0' * 16}{max(bound - 1, 0):016x}", f"{'0' * 16}{min(bound, (1 << 64) - 1):016x}"]
        with psycopg.connect(store.dsn()) as connection:
            sampled_sql = sql.SQL(SAMPLED_SQL).format(column=sql.Identifier("id"), bound=sql.Literal(bound))
            query = sql.SQL("SELECT id, {} FROM unnest(%s::text[]) AS id").format(sampled_sql)
            decisions: dict[str, bool] = dict(connection.execute(query, (ids + ids_at_edge,)).fetchall())
        assert decisions == {i: sampled(ratio, i) for i in ids + ids_at_edge}, ratio


def _days(first_age: int, last_age: int) -> list[dt.date]:
    return [TODAY - dt.timedelta(days=age) for age in range(first_age, last_age)]


# -- real S3, and runs that are killed or lose their archive half-way ---------------------------------------------


def _state(store: Any, archive: Archive) -> dict[str, Any]:
    """Everything a run leaves behind: rows per partition, the archive's rows per day, the manifest's states."""
    with psycopg.connect(store.dsn()) as connection:
        states = connection.execute(
            "SELECT day, signal, state, store_rows, archived_rows FROM otel_rag.retention_days ORDER BY 1, 2"
        ).fetchall()
        days = [row[0] for row in connection.execute("SELECT DISTINCT day FROM otel_rag.retention_days").fetchall()]
    return {
        "states": states,
        "rows": {(s, d): Counter(_rows(store, s, d)) for s in SIGNALS for d in _days(0, 41)},
        "archive": {(s, d): Counter(_archived(store, archive, s, d)) for s in SIGNALS for d in days},
    }


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path / "s3")
    yield server
    server.stop()


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "otel_rag._cli.main", "retention", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_archive_in_real_s3_ends_as_an_uninterrupted_run_whatever_step_the_run_is_killed_at(
    pg_server: Any, s3: S3Server, tmp_path: Path
) -> None:
    from tests.support.postgres import Database

    reference, killed = Database(pg_server), Database(pg_server)
    for database in (reference, killed):
        seed(database.dsn(), TODAY)
    env = {**s3.client_env(), "OTEL_RAG_POSTGRES_DSN": reference.dsn("rag_maint")}
    with mock_env(env):
        reference_archive = Archive(f"s3://{s3.bucket}/reference")
        run(reference.dsn("rag_maint"), "otel_rag", POLICY, reference_archive, NOW)
    env = {
        **s3.client_env(),
        "OTEL_RAG_POSTGRES_DSN": killed.dsn("rag_maint"),
        "OTEL_RAG_ARCHIVE_URL": f"s3://{s3.bucket}/killed",
    }
    # SIGKILL at points spread over the run: after the first object, mid-archive, after the first thinning,
    # after the first drop (seen from the manifest, polled every few milliseconds)
    kill_points = [
        "SELECT count(*) >= 1 FROM otel_rag.retention_objects",
        "SELECT count(*) >= 30 FROM otel_rag.retention_objects",
        "SELECT count(*) >= 1 FROM otel_rag.retention_days WHERE state = 'thinned'",
        "SELECT count(*) >= 1 FROM otel_rag.retention_days WHERE state = 'dropped'",
    ]
    killed_at = []
    for condition in kill_points:
        process = _cli(env, "run", "--now", NOW.isoformat())
        while process.poll() is None and not killed.scalar(condition):
            time.sleep(0.003)
        if process.poll() is None:
            process.kill()
            killed_at.append(condition)
        process.wait()
    assert len(killed_at) >= 3, f"runs finished before they could be killed (killed at {killed_at})"
    finished = _cli(env, "run", "--now", NOW.isoformat())
    _out, err = finished.communicate(timeout=300)
    assert finished.returncode == 0, err
    with mock_env(env):
        killed_archive = Archive(f"s3://{s3.bucket}/killed")
        assert _state(killed, killed_archive) == _state(reference, reference_archive)
    # nothing but what the manifest records is in the bucket: a killed upload left no stray object
    recorded = {
        row[0] for row in psycopg.connect(killed.dsn()).execute("SELECT object_key FROM otel_rag.retention_objects")
    }
    stored = {
        str(path.relative_to(s3.data / s3.bucket / "killed"))
        for path in (s3.data / s3.bucket / "killed").rglob("*.parquet")
    }
    assert stored == recorded


def test_s3_gone_mid_run_fails_the_run_cleanly_removes_nothing_unarchived_and_the_next_run_completes(
    store: Any, s3: S3Server
) -> None:
    seeded = seed(store.dsn(), TODAY)
    env = {
        **s3.client_env(),
        "OTEL_RAG_POSTGRES_DSN": store.dsn("rag_maint"),
        "OTEL_RAG_ARCHIVE_URL": f"s3://{s3.bucket}/day",
    }
    process = _cli(env, "run", "--now", NOW.isoformat())
    while process.poll() is None and not store.scalar("SELECT count(*) >= 3 FROM otel_rag.retention_objects"):
        time.sleep(0.003)
    s3.stop()
    _out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    assert "retention stopped" in err and "run again" in err
    with psycopg.connect(store.dsn()) as connection:
        recorded = {(row[0], row[1]) for row in connection.execute("SELECT day, signal FROM otel_rag.retention_days")}
    unrecorded = [(day, signal) for day in _days(7, 40) for signal in SIGNALS if (day, signal) not in recorded]
    assert unrecorded, "the run finished before S3 went away"
    for day, signal in unrecorded:  # not archived, so not touched
        assert Counter(_rows(store, signal, day)) == _seeded_keys(seeded, signal, day), (day, signal)
    s3.start()
    again = _cli(env, "run", "--now", NOW.isoformat())
    _out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    with mock_env(env):
        archive = Archive(env["OTEL_RAG_ARCHIVE_URL"])
        for day in _days(7, 40):
            for signal in SIGNALS:
                assert Counter(_archived(store, archive, signal, day)) == _seeded_keys(seeded, signal, day)
    # and a trace that left Postgres is read back from S3 by the CLI, through pyarrow's own S3 client
    dropped = sorted(seeded.traces(TODAY - dt.timedelta(days=33)))[0]
    shown = subprocess.run(
        [sys.executable, "-m", "otel_rag._cli.main", "trace", dropped, "--json"],
        env={**os.environ, **env, "OTEL_RAG_POSTGRES_DSN": store.dsn("rag_reader")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "read from the archive" in shown.stderr
    expected_spans = sum(1 for rows in seeded.spans.values() for row in rows if row["trace_id"] == dropped)
    assert len(json.loads(shown.stdout)["spans"]) == expected_spans


# -- the questions, answered from the archive once the rows have left Postgres --------------------------------------


def _cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[Any, str]:
    from otel_rag._cli.main import main

    assert main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_trace_cost_and_logs_print_the_same_from_the_archive_as_they_did_from_postgres(
    seeded_store: tuple[Any, Seeded, Archive], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store, seeded, archive = seeded_store
    monkeypatch.setenv("OTEL_RAG_POSTGRES_DSN", store.dsn("rag_reader"))
    monkeypatch.setenv("OTEL_RAG_ARCHIVE_URL", archive.url)
    warm_day, cold_day = TODAY - dt.timedelta(days=12), TODAY - dt.timedelta(days=35)
    keep, _ = expected_warm(seeded, warm_day, POLICY.warm_sample_ratio)
    thinned_away = sorted(seeded.traces(warm_day) - keep)[0]
    dropped = sorted(seeded.traces(cold_day))[0]
    hot = sorted(seeded.traces(TODAY - dt.timedelta(days=2)))[0]
    window = ("--since", f"{cold_day}T11:00:00+00:00", "--until", f"{TODAY}T23:00:00+00:00", "--limit", "100000")
    before = {
        trace: (_cli_json(capsys, "trace", trace)[0], _cli_json(capsys, "cost", trace)[0])
        for trace in (thinned_away, dropped, hot)
    }
    logs_before, _ = _cli_json(capsys, "logs", *window)

    run(store.dsn("rag_maint"), "otel_rag", POLICY, archive, NOW)
    assert thinned_away not in {trace for trace, _ in _rows(store, "spans", warm_day)}
    assert _rows(store, "spans", cold_day) == []
    for trace, (report, cost) in before.items():
        after, note = _cli_json(capsys, "trace", trace)
        assert after == report
        assert ("read from the archive" in note) == (trace != hot)
        assert _cli_json(capsys, "cost", trace)[0] == cost
    logs_after, note = _cli_json(capsys, "logs", *window)
    assert "read from the archive" in note
    assert logs_after == logs_before
    assert len(logs_after) == sum(len(seeded.logs[d]) for d in _days(0, 36)) - sum(
        1 for row in seeded.logs[cold_day] if row["time"] < dt.datetime.combine(cold_day, dt.time(11), tzinfo=dt.UTC)
    )


def test_a_trace_in_neither_the_store_nor_the_archive_is_not_found(
    seeded_store: tuple[Any, Seeded, Archive], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from otel_rag._cli.main import main

    store, _, archive = seeded_store
    run(store.dsn("rag_maint"), "otel_rag", POLICY, archive, NOW)
    monkeypatch.setenv("OTEL_RAG_POSTGRES_DSN", store.dsn("rag_reader"))
    monkeypatch.setenv("OTEL_RAG_ARCHIVE_URL", archive.url)
    assert main(["trace", "f" * 32]) == 1
    assert "neither in the store nor in the archive" in capsys.readouterr().err


def test_restore_brings_a_dropped_day_back_whole_twice_without_duplicates_and_the_next_run_drops_it_again(
    seeded_store: tuple[Any, Seeded, Archive], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store, seeded, archive = seeded_store
    run(store.dsn("rag_maint"), "otel_rag", POLICY, archive, NOW)
    monkeypatch.setenv("OTEL_RAG_POSTGRES_DSN", store.dsn("rag_maint"))
    monkeypatch.setenv("OTEL_RAG_ARCHIVE_URL", archive.url)
    cold_day, warm_day = TODAY - dt.timedelta(days=33), TODAY - dt.timedelta(days=20)
    for day in (cold_day, warm_day, cold_day):  # the second restore of a day inserts nothing
        answer, _ = _cli_json(capsys, "restore", "--day", day.isoformat())
        for signal in SIGNALS:
            assert Counter(_rows(store, signal, day)) == _seeded_keys(seeded, signal, day)
    assert answer["inserted"] == {"logs": 0, "spans": 0}
    again = run(store.dsn("rag_maint"), "otel_rag", POLICY, archive, NOW)
    assert again.archived_rows == 0  # nothing new: restored rows are the archived ones
    assert _rows(store, "spans", cold_day) == []
    keep, _ = expected_warm(seeded, warm_day, POLICY.warm_sample_ratio)
    assert {trace for trace, _ in _rows(store, "spans", warm_day)} == {
        trace for trace in keep if any(row["trace_id"] == trace for row in seeded.spans[warm_day])
    }
    from otel_rag._cli.main import main

    assert main(["restore", "--day", "2020-01-01"]) == 1
    assert "not in the archive" in capsys.readouterr().err


def test_the_debug_server_reports_the_runs_for_prometheus_behind_its_token(
    seeded_store: tuple[Any, Seeded, Archive],
) -> None:
    from prometheus_client.parser import text_string_to_metric_families
    from starlette.testclient import TestClient

    from otel_rag.web._access import DebugConfig
    from otel_rag.web._server import create_app

    store, _, archive = seeded_store
    token = "retention-metrics-token-0123456789"
    client = TestClient(create_app(DebugConfig(dsn=store.dsn("rag_reader"), token=token)))
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/debug/metrics").status_code == 401
    never = client.get("/debug/metrics", headers=auth)
    assert never.status_code == 200 and never.text == ""  # no run recorded: nothing for an alert to see
    report = run(store.dsn("rag_maint"), "otel_rag", POLICY, archive, NOW)
    answer = client.get("/debug/metrics", headers=auth)
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }
    assert samples[("otel_rag_retention_rows_total", (("action", "archived"),))] == report.archived_rows
    assert samples[("otel_rag_retention_rows_total", (("action", "dropped"),))] == report.dropped_rows
    assert samples[("otel_rag_retention_freed_bytes_total", ())] == report.bytes_freed > 0
    assert samples[("otel_rag_retention_last_run_ok", ())] == 1
    assert abs(samples[("otel_rag_retention_last_success_timestamp_seconds", ())] - time.time()) < 120
    assert samples[("otel_rag_retention_days", (("state", "thinned"),))] == 23


def test_the_debug_api_answers_a_trace_from_the_archive_as_it_did_from_postgres(
    seeded_store: tuple[Any, Seeded, Archive],
) -> None:
    from starlette.testclient import TestClient

    from otel_rag.web._access import DebugConfig
    from otel_rag.web._server import create_app

    store, seeded, archive = seeded_store
    token = "archive-api-token-0123456789"
    auth = {"Authorization": f"Bearer {token}"}
    with_archive = TestClient(create_app(DebugConfig(store.dsn("rag_reader"), token=token, archive_url=archive.url)))
    without = TestClient(create_app(DebugConfig(store.dsn("rag_reader"), token=token)))
    dropped = sorted(seeded.traces(TODAY - dt.timedelta(days=31)))[0]
    before = with_archive.get(f"/debug/api/traces/{dropped}", headers=auth).json()
    assert before["from_archive"] is False
    window = {
        "since": f"{TODAY - dt.timedelta(days=32)}T12:00:00Z",
        "until": f"{TODAY - dt.timedelta(days=5)}",
        "limit": "5000",
    }
    logs_before = with_archive.get("/debug/api/logs", params=window, headers=auth).json()
    assert 1000 < len(logs_before) < 5000  # the whole window, under the limit
    run(store.dsn("rag_maint"), "otel_rag", POLICY, archive, NOW)
    assert with_archive.get("/debug/api/logs", params=window, headers=auth).json() == logs_before
    assert len(without.get("/debug/api/logs", params=window, headers=auth).json()) < len(logs_before) / 2
    assert without.get(f"/debug/api/traces/{dropped}", headers=auth).status_code == 404
    after = with_archive.get(f"/debug/api/traces/{dropped}", headers=auth)
    assert after.status_code == 200
    assert after.json() == {**before, "from_archive": True}
    missing = with_archive.get(f"/debug/api/traces/{'e' * 32}", headers=auth)
    assert missing.status_code == 404 and "neither in the store nor in the archive" in missing.json()["error"]


def test_days_past_the_archive_days_leave_the_archive_too(seeded_store: tuple[Any, Seeded, Archive]) -> None:
    store, seeded, archive = seeded_store
    short = Policy(hot_days=7, warm_days=30, warm_sample_ratio=0.1, archive_days=35)
    first = run(store.dsn("rag_maint"), "otel_rag", short, archive, NOW)
    assert first.expired_objects == 2 * 7  # ages 35..41, logs and spans
    later = run(store.dsn("rag_maint"), "otel_rag", short, archive, NOW + dt.timedelta(days=2))
    assert later.expired_objects == 2 * 2  # ages 33 and 34 two days later
    with psycopg.connect(store.dsn()) as connection:
        states: dict[dt.date, str] = dict(
            connection.execute("SELECT day, min(state) FROM otel_rag.retention_days GROUP BY day").fetchall()
        )
        kept_objects = {row[0] for row in connection.execute("SELECT DISTINCT day FROM otel_rag.retention_objects")}
    today = TODAY + dt.timedelta(days=2)
    assert {day for day, state in states.items() if state == "expired"} == {
        day for day in states if (today - day).days >= 35
    }
    assert all((today - day).days < 35 for day in kept_objects)
    files = {p.name for p in Path(archive.url.removeprefix("file://")).rglob("*.parquet")}
    assert len(files) == 2 * len(kept_objects)
    assert Counter(_archived(store, archive, "spans", TODAY - dt.timedelta(days=32))) == _seeded_keys(
        seeded, "spans", TODAY - dt.timedelta(days=32)
    )
