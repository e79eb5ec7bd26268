"""The log lifecycle: hot days as they are, then archived and thinned to the warm set, then dropped.

A day (UTC) younger than `hot_days` is left alone. Older, it is first archived (archive.py: every row of its
`logs` and `spans` partitions, verified by reading the object back), and only then:
- younger than `warm_days`, its partitions are thinned to the warm set: whole traces someone will ask about (an
  error span or error-level log, a failed evaluation or a hallucination, user feedback of 2 or less, a root span
  slower than that day's p95 for its route), plus the traces a trace-id ratio sampler keeps at `warm_sample_ratio`
  (the same decision as the SDK's TraceIdRatioBased, so it agrees with other sampled systems);
- older, its partitions are dropped; the day lives on in the archive until `archive_days`, when its objects are
  deleted.

Two tables drive every step (migrations/0004_retention.sql). `retention_days` records, per day and signal, what the
partition holds by our records (a row count and a key checksum) and its state; `retention_objects` the verified
objects. Before rows leave a partition, the partition is locked against writes and its count and checksum
compared with the record: rows that arrived since (replayed from a sink's spool) are archived first, as a further
part, so nothing leaves Postgres that the archive does not hold, and nothing is archived twice. Each step commits
its rows and its record together, so a run killed anywhere (SIGKILL) is completed by the next. A session advisory
lock keeps a second run from starting while one is in progress.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg import sql

from otel_rag._config.settings import ConfigError
from otel_rag._store.archive import Archive
from otel_rag._store.retention_steps import SIGNALS, DayStore, count_and_checksum

__all__ = [
    "SIGNALS",
    "AlreadyRunning",
    "DayPlan",
    "Policy",
    "Progress",
    "RunReport",
    "day_status",
    "plan",
    "restore",
    "run",
    "run_figures",
    "sampler_bound",
]

_TRACE_ID_LIMIT = (1 << 64) - 1


@dataclass(frozen=True)
class Policy:
    """How long each tier lasts, in days counted back from today (UTC), and the warm tier's sample ratio."""

    hot_days: int = 7
    warm_days: int = 30
    warm_sample_ratio: float = 0.1
    archive_days: int = 365

    def __post_init__(self) -> None:
        if not 1 <= self.hot_days <= self.warm_days <= self.archive_days:
            raise ValueError("retention needs 1 <= hot days <= warm days <= archive days")

    def tier(self, day: dt.date, today: dt.date) -> str:
        age = (today - day).days
        if age < self.hot_days:
            return "hot"
        if age < self.warm_days:
            return "warm"
        if age < self.archive_days:
            return "cold"
        return "expired"


def sampler_bound(ratio: float) -> int:
    """The bound of the SDK's TraceIdRatioBased sampler: a trace is kept when its low 64 bits are below it."""
    return round(ratio * (_TRACE_ID_LIMIT + 1))


class Progress(Protocol):
    """What a run reports as it goes: each day it starts, and the rows it exports to the archive."""

    def day(self, number: int, total: int, plan: DayPlan) -> None: ...

    def rows(self, count: int) -> None: ...


class AlreadyRunning(RuntimeError):
    """Another retention run holds the lock."""


@dataclass
class DayPlan:
    """One day: its tier now, its state, and what a run does to it."""

    day: dt.date
    tier: str
    state: dict[str, str | None]  # per signal: None (never archived), archived, thinned, dropped, expired
    rows: dict[str, int]  # rows in Postgres now, per signal
    action: str  # none, archive+thin, thin, rewrite, archive+drop, drop, expire
    rows_kept: int | None = None  # warm rows after thinning (logs + spans), when the plan computed them
    bytes: int = 0  # bytes of the day's partitions in Postgres
    bytes_freed: int | None = None  # a dry run's estimate: all of them when dropped, in proportion when thinned


@dataclass
class RunReport:
    started_at: dt.datetime
    days: list[DayPlan] = field(default_factory=list)
    archived_rows: int = 0
    thinned_rows: int = 0
    dropped_rows: int = 0
    expired_objects: int = 0
    bytes_freed: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["started_at"] = self.started_at.isoformat()
        for day in data["days"]:
            day["day"] = day["day"].isoformat()
        return data


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"otel_rag.retention:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def run_figures(connection: psycopg.Connection[Any], schema: str) -> dict[str, Any] | None:
    """What the retention metrics report, read from the manifest (None: no run was ever recorded).

    last_success/last_run: epoch seconds (0 when no run succeeded); rows: archived, thinned and dropped by every run
    recorded; bytes_freed; days: how many days are in each state.
    """
    runs = sql.Identifier(schema, "retention_runs")
    row = connection.execute(
        sql.SQL(
            "SELECT count(*), coalesce(extract(epoch FROM max(finished_at) FILTER (WHERE ok)), 0),"
            " coalesce(extract(epoch FROM max(started_at)), 0), coalesce(sum(archived_rows), 0),"
            " coalesce(sum(thinned_rows), 0), coalesce(sum(dropped_rows), 0), coalesce(sum(bytes_freed), 0),"
            " coalesce((SELECT ok FROM {runs} ORDER BY id DESC LIMIT 1), false) FROM {runs}"
        ).format(runs=runs)
    ).fetchone()
    if not row or not row[0]:
        return None
    states = connection.execute(
        sql.SQL("SELECT state, count(DISTINCT day) FROM {} GROUP BY state").format(
            sql.Identifier(schema, "retention_days")
        )
    ).fetchall()
    return {
        "last_success": float(row[1]),
        "last_run": float(row[2]),
        "last_run_ok": bool(row[7]),
        "rows": {"archived": int(row[3]), "thinned": int(row[4]), "dropped": int(row[5])},
        "bytes_freed": int(row[6]),
        "days": {str(state): int(count) for state, count in states},
    }


def restore(dsn: str, schema: str, archive: Archive, day: dt.date) -> dict[str, int]:
    """Bring an archived day back into Postgres, whole: rows the partition lacks are inserted, none twice.

    The day then counts as archived and not yet thinned; the next retention run applies the policy to it again
    (thins or drops it) unless the tiers were lengthened. Returns the rows inserted per signal.
    """
    from otel_rag._store.from_archive import copy_rows
    from otel_rag._store.migrate import ensure_partitions

    inserted: dict[str, int] = {}
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(schema),)).fetchone()
        if not row or not row[0]:
            raise AlreadyRunning("a retention run is in progress on this store (advisory lock held)")
        try:
            store = DayStore(connection, schema, archive)
            objects = {signal: store.objects(day, signal) for signal in SIGNALS}
            if not any(objects.values()):
                raise LookupError(f"{day} is not in the archive")
            ensure_partitions(connection, schema, day, day)
            for signal in SIGNALS:
                inserted[signal] = 0
                with connection.transaction():
                    connection.execute(
                        sql.SQL("CREATE TEMP TABLE restored (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                            sql.Identifier(schema, signal)
                        )
                    )
                    for item in objects[signal]:
                        copy_rows(connection, "restored", archive.read_all(item["object_key"]))
                    cursor = connection.execute(
                        sql.SQL("INSERT INTO {} SELECT * FROM restored ON CONFLICT DO NOTHING").format(
                            sql.Identifier(schema, signal)
                        )
                    )
                    inserted[signal] = cursor.rowcount
                    count, checksum = count_and_checksum(connection, schema, signal, day)
                    connection.execute(
                        sql.SQL(
                            "UPDATE {} SET state = 'archived', store_rows = %s, store_checksum = %s,"
                            " bytes_freed = NULL, updated_at = now() WHERE day = %s AND signal = %s"
                        ).format(store.table("retention_days")),
                        (count, checksum, day, signal),
                    )
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(schema),))
    return inserted


# -- the run -------------------------------------------------------------------------------------------------------

_RETRIES = 3  # rows arriving between archiving and the lock: archive them and try again


def _state_of(states: dict[tuple[dt.date, str], dict[str, Any]], day: dt.date) -> dict[str, str | None]:
    return {signal: (states[(day, signal)]["state"] if (day, signal) in states else None) for signal in SIGNALS}


def plan(connection: psycopg.Connection[Any], schema: str, policy: Policy, today: dt.date) -> list[DayPlan]:
    """Every day the store or the manifest knows, oldest first, with what a run would do to it."""
    store = DayStore(connection, schema, None)
    present = store.partitions()
    states = store.states()
    days = sorted(set(present) | {day for day, _signal in states})
    plans = []
    for day in days:
        tier = policy.tier(day, today)
        signals = present.get(day, set())
        state = _state_of(states, day)
        hot = tier == "hot"  # nothing to compare with the records: counting its rows is enough
        now = {s: count_and_checksum(connection, schema, s, day, checksum=not hot) for s in sorted(signals)}
        rows = {signal: count for signal, (count, _checksum) in now.items()}
        recorded = {
            s: (states[(day, s)]["store_rows"], int(states[(day, s)]["store_checksum"]))
            for s in signals
            if (day, s) in states
        }
        late = any(recorded.get(s) != now[s] for s in signals)  # rows arrived after the day was archived
        size = sum(store.relation_bytes(signal, day) for signal in signals)
        if hot:
            action = "none"
        elif tier == "warm":
            action = "archive+thin" if late else "thin"
            if signals and not late and all(state[s] == "thinned" for s in signals):
                unwritten = any(states[(day, s)]["bytes_freed"] is None for s in signals)
                action = "rewrite" if unwritten else "none"  # "rewrite": killed before its VACUUM FULL
        elif signals:
            action = "archive+drop" if late else "drop"
        else:
            action = "expire" if tier == "expired" and any(state[s] == "dropped" for s in SIGNALS) else "none"
        plans.append(DayPlan(day, tier, state, rows, action, bytes=size))
    return plans


def run(
    dsn: str,
    schema: str,
    policy: Policy,
    archive: Archive | None,
    now: dt.datetime,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> RunReport:
    """Do what is due (or, with `dry_run`, say what would be done and change nothing)."""
    today = now.astimezone(dt.UTC).date()
    report = RunReport(started_at=now, dry_run=dry_run)
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (_lock_key(schema),)).fetchone()
        if not row or not row[0]:
            raise AlreadyRunning("another retention run is in progress on this store (advisory lock held)")
        try:
            report.days = plan(connection, schema, policy, today)
            due = [day for day in report.days if day.action != "none"]
            if due and archive is None and any(day.action != "expire" for day in due):
                raise ConfigError(
                    "OTEL_RAG_ARCHIVE_URL", "", "s3://bucket[/prefix] or file:///folder: days are due to leave Postgres"
                )
            store = DayStore(connection, schema, archive, progress.rows if progress else None)
            bound = sampler_bound(policy.warm_sample_ratio)
            if dry_run:
                for day in due:
                    rows = sum(day.rows.values())
                    if day.action.endswith("thin"):
                        day.rows_kept = _rows_kept(store, day.day, bound)
                        day.bytes_freed = day.bytes - day.bytes * day.rows_kept // rows if rows else 0
                    elif day.action.endswith("drop"):
                        day.bytes_freed = day.bytes
                report.bytes_freed = sum(day.bytes_freed or 0 for day in due)
                return report
            run_id = _start_run(store, now)
            try:
                for number, day in enumerate(due, 1):
                    if progress:
                        progress.day(number, len(due), day)
                    _settle(store, day, policy, bound, report)
                _finish_run(store, run_id, report, None)
            except BaseException as error:
                _finish_run(store, run_id, report, f"{type(error).__name__}: {error}")
                raise
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(schema),))
    return report


def _start_run(store: DayStore, now: dt.datetime) -> int:
    row = store.connection.execute(
        sql.SQL("INSERT INTO {} (started_at) VALUES (now()) RETURNING id").format(store.table("retention_runs"))
    ).fetchone()
    assert row is not None
    return int(row[0])


def _finish_run(store: DayStore, run_id: int, report: RunReport, error: str | None) -> None:
    store.connection.execute(
        sql.SQL(
            "UPDATE {} SET finished_at = now(), ok = %s, archived_rows = %s, thinned_rows = %s, dropped_rows = %s,"
            " bytes_freed = %s, error = %s WHERE id = %s"
        ).format(store.table("retention_runs")),
        (
            error is None,
            report.archived_rows,
            report.thinned_rows,
            report.dropped_rows,
            report.bytes_freed,
            error,
            run_id,
        ),
    )


def _settle(store: DayStore, plan_: DayPlan, policy: Policy, bound: int, report: RunReport) -> None:
    """Bring one day to its tier: archive what the archive lacks, then thin or drop, then expire."""
    day = plan_.day
    present = store.partitions()
    signals = present.get(day, set())
    if plan_.action.endswith(("thin", "drop")):
        leave = _thin if plan_.action.endswith("thin") else _drop
        for _attempt in range(_RETRIES):
            for signal in sorted(signals):
                report.archived_rows += store.archive_new_rows(day, signal)
            if leave(store, day, signals, present, bound, report):
                break
        else:
            raise RuntimeError(f"{day}: rows kept arriving while it was archived ({_RETRIES} tries); run again later")
    if plan_.action.endswith(("thin", "rewrite")):
        for signal in sorted(signals):
            report.bytes_freed += store.rewrite(day, signal)
    if policy.tier(day, report.started_at.astimezone(dt.UTC).date()) == "expired":
        for signal in SIGNALS:
            report.expired_objects += store.expire(day, signal)


def _thin(  # noqa: PLR0917 - the two ways of leaving share one signature
    store: DayStore, day: dt.date, signals: set[str], present: dict[dt.date, set[str]], bound: int, report: RunReport
) -> bool:
    """Thin the day to its warm set in one locked transaction; False when rows arrived since they were archived."""
    with store.connection.transaction():
        if not store.lock_and_verify(day, signals, "SHARE ROW EXCLUSIVE"):
            return False
        previous = _state_of(store.states(), day - dt.timedelta(days=1))
        store.keep_traces(day, present, any(state == "thinned" for state in previous.values()), bound)
        report.thinned_rows += store.thin(day, signals, bound)
    return True


def _drop(  # noqa: PLR0917
    store: DayStore, day: dt.date, signals: set[str], present: dict[dt.date, set[str]], bound: int, report: RunReport
) -> bool:
    """Drop the day's partitions in one locked transaction; False when rows arrived since they were archived."""
    with store.connection.transaction():
        if not store.lock_and_verify(day, signals, "ACCESS EXCLUSIVE"):
            return False
        states = store.states()
        for signal in sorted(signals):
            report.dropped_rows += int(states[(day, signal)]["store_rows"])
            report.bytes_freed += store.relation_bytes(signal, day)
            store.drop(day, signal)
    return True


def _rows_kept(store: DayStore, day: dt.date, bound: int) -> int:
    """For a dry run: the rows the warm set would keep, computed in a transaction that is rolled back."""
    present = store.partitions()
    signals = present.get(day, set())
    kept = 0
    try:
        with store.connection.transaction():
            previous = _state_of(store.states(), day - dt.timedelta(days=1))
            store.keep_traces(day, present, any(s == "thinned" for s in previous.values()), bound)
            for signal in sorted(signals):
                kept += store.count_kept(day, signal, bound)
            raise _Rollback
    except _Rollback:
        pass
    return kept


class _Rollback(Exception):
    pass


def day_status(dsn: str, schema: str, policy: Policy, today: dt.date) -> tuple[list[DayPlan], dict[str, Any] | None]:
    """Per day: tier, state, rows in Postgres; and the last run."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        days = plan(connection, schema, policy, today)
        cursor = connection.cursor(row_factory=psycopg.rows.dict_row)
        last = cursor.execute(
            sql.SQL("SELECT * FROM {} ORDER BY id DESC LIMIT 1").format(sql.Identifier(schema, "retention_runs"))
        ).fetchone()
    return days, last
