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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg import sql

from otel_rag._config.settings import ConfigError
from otel_rag._store.archive import Archive, ArchivedObject, arrow_type
from otel_rag._store.migrate import list_partitions

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

SIGNALS = ("logs", "spans")
_ID_COLUMN = {"logs": "record_id", "spans": "span_id"}
_EXPORT_BATCH = 16_384
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


def _ident(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def _partition(signal: str, day: dt.date) -> str:
    return f"{signal}_{day:%Y%m%d}"


# The same sum as archive.key_checksum: first 60 bits of md5("trace|epoch_us|id"), summed.
_KEY_CHECKSUM = (
    "coalesce(sum(('x' || substr(md5(coalesce(trace_id, '') || '|' || (extract(epoch FROM time) * 1000000)::bigint"
    " || '|' || {id}::text), 1, 15))::bit(60)::bigint), 0)"
)


def _count_and_checksum(connection: psycopg.Connection[Any], schema: str, signal: str, day: dt.date) -> tuple[int, int]:
    query = sql.SQL("SELECT count(*), {checksum} FROM {table}").format(
        checksum=sql.SQL(_KEY_CHECKSUM).format(id=_ident(_ID_COLUMN[signal])),
        table=_ident(schema, _partition(signal, day)),
    )
    row = connection.execute(query).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


class _Store:
    """The retention job's view of one store: partitions, the manifest, and the queries that move rows."""

    def __init__(
        self,
        connection: psycopg.Connection[Any],
        schema: str,
        archive: Archive | None,
        on_rows: Callable[[int], None] | None = None,
    ) -> None:
        self.connection = connection
        self.schema = schema
        self.archive = archive
        self.on_rows = on_rows  # told how many rows each exported batch held (a progress bar)
        self._columns: dict[str, list[tuple[str, str, int | None, int | None]]] = {}

    def table(self, name: str) -> sql.Composed:
        return sql.SQL("{}").format(_ident(self.schema, name))

    def partitions(self) -> dict[dt.date, set[str]]:
        days: dict[dt.date, set[str]] = {}
        for name, day in list_partitions(self.connection, self.schema):
            days.setdefault(day, set()).add(name.split("_", 1)[0])
        return days

    def states(self) -> dict[tuple[dt.date, str], dict[str, Any]]:
        cursor = self.connection.cursor(row_factory=psycopg.rows.dict_row)
        rows = cursor.execute(sql.SQL("SELECT * FROM {}").format(self.table("retention_days"))).fetchall()
        return {(row["day"], row["signal"]): row for row in rows}

    def objects(self, day: dt.date, signal: str) -> list[dict[str, Any]]:
        cursor = self.connection.cursor(row_factory=psycopg.rows.dict_row)
        return cursor.execute(
            sql.SQL("SELECT * FROM {} WHERE day = %s AND signal = %s ORDER BY part").format(
                self.table("retention_objects")
            ),
            (day, signal),
        ).fetchall()

    def columns(self, signal: str) -> list[tuple[str, str, int | None, int | None]]:
        """(name, Postgres type, numeric precision, scale) of a table's columns, in table order."""
        if signal not in self._columns:
            self._columns[signal] = [
                (str(name), str(kind), precision, scale)
                for name, kind, precision, scale in self.connection.execute(
                    "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns"
                    " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                    (self.schema, signal),
                ).fetchall()
            ]
        return self._columns[signal]

    # -- archiving ---------------------------------------------------------------------------------------------

    def archive_new_rows(self, day: dt.date, signal: str) -> int:
        """Archive the partition's rows that the archive does not hold yet (all of them the first time) as one
        more verified object, and record it with the partition's count and checksum of the same snapshot.
        Returns the rows archived."""
        assert self.archive is not None
        connection = self.connection
        objects = self.objects(day, signal)
        with connection.transaction():
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            count, checksum = _count_and_checksum(connection, self.schema, signal, day)
            state = self.states().get((day, signal))
            if state is not None and (state["store_rows"], int(state["store_checksum"])) == (count, checksum):
                return 0  # nothing new since the last record
            if objects:
                self._load_archived_keys(day, signal, objects)
            new_rows = self._export(day, signal, anti_join=bool(objects))
            part = (objects[-1]["part"] + 1) if objects else 0
            self.archive.remove_unrecorded(signal, day, part, {item["object_key"] for item in objects})
            written = self.archive.write(
                signal, day, part, schema=self._arrow_schema(signal), batches=new_rows, id_column=_ID_COLUMN[signal]
            )
            if written.row_count == 0 and state is not None:
                raise RuntimeError(
                    f"{_partition(signal, day)}: holds rows the retention records do not account for, and none that"
                    " the archive lacks (rows deleted by hand?); nothing was removed"
                )
            self._record_object(day, signal, part, written)
            archived = sum(int(o["row_count"]) for o in objects) + written.row_count
            connection.execute(
                sql.SQL(
                    "INSERT INTO {} (day, signal, state, store_rows, store_checksum, archived_rows)"
                    " VALUES (%s, %s, 'archived', %s, %s, %s)"
                    " ON CONFLICT (day, signal) DO UPDATE SET store_rows = excluded.store_rows,"
                    " store_checksum = excluded.store_checksum, archived_rows = excluded.archived_rows,"
                    " updated_at = now()"
                ).format(self.table("retention_days")),
                (day, signal, count, checksum, archived),
            )
        return written.row_count

    def _record_object(self, day: dt.date, signal: str, part: int, written: ArchivedObject) -> None:
        self.connection.execute(
            sql.SQL(
                "INSERT INTO {} (day, signal, part, object_key, row_count, key_checksum, sha256, object_bytes)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            ).format(self.table("retention_objects")),
            (day, signal, part, written.key, written.row_count, written.key_checksum, written.sha256, written.size),
        )

    def _load_archived_keys(self, day: dt.date, signal: str, objects: list[dict[str, Any]]) -> None:
        """The archive's keys of this day into a temporary table, to find the rows it lacks."""
        assert self.archive is not None
        id_column = _ID_COLUMN[signal]
        self.connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS archived_keys (trace_id text, time_us bigint, id text) ON COMMIT DROP"
        )
        with self.connection.cursor().copy("COPY archived_keys (trace_id, time_us, id) FROM STDIN") as copy:
            for item in objects:
                table = self.archive.read_keys(item["object_key"], id_column)
                times = table.column("time").cast("int64").to_pylist()
                for trace_id, time_us, row_id in zip(
                    table.column("trace_id").to_pylist(), times, table.column(id_column).to_pylist(), strict=True
                ):
                    copy.write_row((trace_id, time_us, row_id))
        self.connection.execute("CREATE INDEX ON archived_keys (time_us, id)")
        self.connection.execute("ANALYZE archived_keys")

    def _select_columns(self, signal: str) -> sql.Composable:
        parts = []
        for name, kind, _precision, _scale in self.columns(signal):
            column = _ident(name)
            parts.append(sql.SQL("{}::text").format(column) if kind in ("jsonb", "json", "uuid") else column)
        return sql.SQL(", ").join(parts)

    def _arrow_schema(self, signal: str) -> Any:
        import pyarrow as pa

        return pa.schema([(name, arrow_type(kind, p, s)) for name, kind, p, s in self.columns(signal)])

    def _export(self, day: dt.date, signal: str, *, anti_join: bool) -> Iterator[Any]:
        """The partition's rows (only those missing from the archive with `anti_join`), sorted by trace and time,
        as Arrow record batches, streamed through a server-side cursor."""
        import pyarrow as pa

        schema = self._arrow_schema(signal)
        where: sql.Composable = sql.SQL("")
        if anti_join:
            where = sql.SQL(
                " WHERE NOT EXISTS (SELECT 1 FROM archived_keys a WHERE a.trace_id IS NOT DISTINCT FROM p.trace_id"
                " AND a.time_us = (extract(epoch FROM p.time) * 1000000)::bigint AND a.id = p.{id}::text)"
            ).format(id=_ident(_ID_COLUMN[signal]))
        query = sql.SQL("SELECT {columns} FROM {table} p{where} ORDER BY trace_id NULLS LAST, time").format(
            columns=self._select_columns(signal), table=_ident(self.schema, _partition(signal, day)), where=where
        )
        with self.connection.cursor(name=f"export_{signal}_{day:%Y%m%d}") as cursor:
            cursor.itersize = _EXPORT_BATCH
            cursor.execute(query)
            while rows := cursor.fetchmany(_EXPORT_BATCH):
                if self.on_rows:
                    self.on_rows(len(rows))
                columns = list(zip(*rows, strict=True))
                yield pa.record_batch(
                    [pa.array(column, type=schema.field(i).type) for i, column in enumerate(columns)], schema=schema
                )

    # -- leaving Postgres --------------------------------------------------------------------------------------

    def lock_and_verify(self, day: dt.date, signals: set[str], mode: str) -> bool:
        """Inside a transaction: lock the day's partitions against writes, and check that they hold exactly what
        the records say (all of it archived). False: rows arrived since; archive them first."""
        # Never queue the sink's writes behind us for long: a lock not granted in 5 s fails the run (run again).
        self.connection.execute("SET LOCAL lock_timeout = '5s'")
        for signal in sorted(signals):
            self.connection.execute(
                sql.SQL("LOCK TABLE {} IN " + mode + " MODE").format(_ident(self.schema, _partition(signal, day)))
            )
        states = self.states()
        for signal in signals:
            state = states.get((day, signal))
            now = _count_and_checksum(self.connection, self.schema, signal, day)
            if state is None or (state["store_rows"], int(state["store_checksum"])) != now:
                return False
        return True

    def keep_traces(self, day: dt.date, present: dict[dt.date, set[str]], thinned_before: bool, bound: int) -> None:
        """The warm set of `day` as the temporary table keep_traces(trace_id)."""
        next_day = day + dt.timedelta(days=1)
        previous = day - dt.timedelta(days=1)
        selects: list[sql.Composable] = []

        def table(signal: str, which: dt.date) -> sql.Identifier:
            return _ident(self.schema, _partition(signal, which))

        for which in (day, next_day):  # a trace's error may come after midnight
            if "spans" in present.get(which, ()):
                selects.append(sql.SQL("SELECT trace_id FROM {} WHERE status = 'ERROR'").format(table("spans", which)))
            if "logs" in present.get(which, ()):
                selects.append(
                    sql.SQL(
                        "SELECT trace_id FROM {} WHERE trace_id IS NOT NULL AND (severity_number >= 17"
                        " OR attributes->>'gen_ai.evaluation.score.label' IN ('fail', 'hallucinated'))"
                    ).format(table("logs", which))
                )
        if "spans" in present.get(day, ()):
            selects.append(
                sql.SQL(
                    "SELECT r.trace_id FROM (SELECT trace_id, duration_ms, service_name,"
                    " coalesce(attributes->>'http.route', name) AS route FROM {spans}"
                    " WHERE parent_span_id IS NULL OR parent_remote) r"
                    " JOIN (SELECT service_name, coalesce(attributes->>'http.route', name) AS route,"
                    " percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95 FROM {spans}"
                    " WHERE parent_span_id IS NULL OR parent_remote GROUP BY 1, 2) p"
                    " ON p.service_name = r.service_name AND p.route = r.route WHERE r.duration_ms > p.p95"
                ).format(spans=table("spans", day))
            )
        for signal in SIGNALS:
            if signal in present.get(day, ()):
                selects.append(
                    sql.SQL("SELECT trace_id FROM {table} WHERE trace_id IS NOT NULL AND {sampled}").format(
                        table=table(signal, day),
                        sampled=sql.SQL(_SAMPLED).format(column=sql.Identifier("trace_id"), bound=sql.Literal(bound)),
                    )
                )
            if thinned_before and signal in present.get(previous, ()):
                # kept the day before (a trace across midnight): keep the rest of it
                selects.append(sql.SQL("SELECT trace_id FROM {}").format(table(signal, previous)))
        union = sql.SQL(" UNION ").join(selects) if selects else sql.SQL("SELECT NULL::text WHERE false")
        self.connection.execute("DROP TABLE IF EXISTS keep_traces")
        self.connection.execute(
            sql.SQL(
                "CREATE TEMP TABLE keep_traces ON COMMIT DROP AS SELECT trace_id FROM ({}) k WHERE trace_id IS NOT NULL"
            ).format(union)
        )
        self.connection.execute("CREATE UNIQUE INDEX ON keep_traces (trace_id)")
        self.connection.execute("ANALYZE keep_traces")

    @staticmethod
    def _not_kept(signal: str, bound: int) -> sql.Composable:
        """The rows of a partition that the warm set (keep_traces) does not keep."""
        not_kept: sql.Composable = sql.SQL("NOT EXISTS (SELECT 1 FROM keep_traces k WHERE k.trace_id = p.trace_id)")
        if signal == "logs":  # a log line outside any trace: kept when error-level, else sampled by its id
            sampled = sql.SQL(_SAMPLED).format(
                column=sql.SQL("replace(p.record_id::text, '-', '')"), bound=sql.Literal(bound)
            )
            not_kept = sql.SQL(
                "CASE WHEN p.trace_id IS NULL THEN NOT (p.severity_number >= 17 OR {sampled}) ELSE {in_trace} END"
            ).format(sampled=sampled, in_trace=not_kept)
        return not_kept

    def thin(self, day: dt.date, signals: set[str], bound: int) -> int:
        """Delete what the warm set does not keep (inside the caller's locked transaction); the rows removed."""
        removed = 0
        for signal in sorted(signals):
            table = _ident(self.schema, _partition(signal, day))
            cursor = self.connection.execute(
                sql.SQL("DELETE FROM {} p WHERE {}").format(table, self._not_kept(signal, bound))
            )
            removed += cursor.rowcount
            count, checksum = _count_and_checksum(self.connection, self.schema, signal, day)
            self.connection.execute(
                sql.SQL(
                    "UPDATE {} SET state = 'thinned', store_rows = %s, store_checksum = %s, bytes_freed = NULL,"
                    " updated_at = now() WHERE day = %s AND signal = %s"
                ).format(self.table("retention_days")),
                (count, checksum, day, signal),
            )
        return removed

    def count_kept(self, day: dt.date, signal: str, bound: int) -> int:
        """The rows thinning would keep (for a dry run; keep_traces must exist)."""
        table = _ident(self.schema, _partition(signal, day))
        row = self.connection.execute(
            sql.SQL("SELECT count(*) FILTER (WHERE NOT ({})) FROM {} p").format(self._not_kept(signal, bound), table)
        ).fetchone()
        return int(row[0]) if row else 0

    def rewrite(self, day: dt.date, signal: str) -> int:
        """VACUUM FULL a thinned partition (no bloat left behind: the space goes back to the OS); bytes freed."""
        table = _ident(self.schema, _partition(signal, day))
        before = self.relation_bytes(signal, day)
        self.connection.execute(sql.SQL("VACUUM FULL {}").format(table))
        freed = max(0, before - self.relation_bytes(signal, day))
        self.connection.execute(
            sql.SQL("UPDATE {} SET bytes_freed = %s, updated_at = now() WHERE day = %s AND signal = %s").format(
                self.table("retention_days")
            ),
            (freed, day, signal),
        )
        return freed

    def relation_bytes(self, signal: str, day: dt.date) -> int:
        row = self.connection.execute(
            "SELECT pg_total_relation_size(format('%%I.%%I', %s::text, %s::text)::regclass)",
            (self.schema, _partition(signal, day)),
        ).fetchone()
        return int(row[0]) if row else 0

    def drop(self, day: dt.date, signal: str) -> None:
        """Detach and drop the partition (inside the caller's locked transaction)."""
        self.connection.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                _ident(self.schema, signal), _ident(self.schema, _partition(signal, day))
            )
        )
        self.connection.execute(sql.SQL("DROP TABLE {}").format(_ident(self.schema, _partition(signal, day))))
        self.connection.execute(
            sql.SQL(
                "UPDATE {} SET state = 'dropped', store_rows = 0, store_checksum = 0, updated_at = now()"
                " WHERE day = %s AND signal = %s"
            ).format(self.table("retention_days")),
            (day, signal),
        )

    def expire(self, day: dt.date, signal: str) -> int:
        """Delete the archive's objects of a day past archive_days; the objects deleted."""
        assert self.archive is not None
        objects = self.objects(day, signal)
        for item in objects:
            self.archive.delete(item["object_key"])
        with self.connection.transaction():
            self.connection.execute(
                sql.SQL("DELETE FROM {} WHERE day = %s AND signal = %s").format(self.table("retention_objects")),
                (day, signal),
            )
            self.connection.execute(
                sql.SQL(
                    "UPDATE {} SET state = 'expired', archived_rows = 0, updated_at = now()"
                    " WHERE day = %s AND signal = %s"
                ).format(self.table("retention_days")),
                (day, signal),
            )
        return len(objects)


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
            store = _Store(connection, schema, archive)
            objects = {signal: store.objects(day, signal) for signal in SIGNALS}
            if not any(objects.values()):
                raise LookupError(f"{day} is not in the archive")
            ensure_partitions(connection, schema, day, day)
            for signal in SIGNALS:
                inserted[signal] = 0
                with connection.transaction():
                    connection.execute(
                        sql.SQL("CREATE TEMP TABLE restored (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                            _ident(schema, signal)
                        )
                    )
                    for item in objects[signal]:
                        copy_rows(connection, "restored", archive.read_all(item["object_key"]))
                    cursor = connection.execute(
                        sql.SQL("INSERT INTO {} SELECT * FROM restored ON CONFLICT DO NOTHING").format(
                            _ident(schema, signal)
                        )
                    )
                    inserted[signal] = cursor.rowcount
                    count, checksum = _count_and_checksum(connection, schema, signal, day)
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


# A trace (or record) id kept by the SDK's TraceIdRatioBased sampler: its low 64 bits, unsigned, below the bound.
_SAMPLED = (
    "((('x' || lpad(right({column}, 16), 16, '0'))::bit(64)::bigint::numeric"
    " + CASE WHEN ('x' || lpad(right({column}, 16), 16, '0'))::bit(64)::bigint < 0"
    " THEN 18446744073709551616 ELSE 0 END) < {bound})"
)


# -- the run -------------------------------------------------------------------------------------------------------

_RETRIES = 3  # rows arriving between archiving and the lock: archive them and try again


def _state_of(states: dict[tuple[dt.date, str], dict[str, Any]], day: dt.date) -> dict[str, str | None]:
    return {signal: (states[(day, signal)]["state"] if (day, signal) in states else None) for signal in SIGNALS}


def plan(connection: psycopg.Connection[Any], schema: str, policy: Policy, today: dt.date) -> list[DayPlan]:
    """Every day the store or the manifest knows, oldest first, with what a run would do to it."""
    store = _Store(connection, schema, None)
    present = store.partitions()
    states = store.states()
    days = sorted(set(present) | {day for day, _signal in states})
    plans = []
    for day in days:
        tier = policy.tier(day, today)
        signals = present.get(day, set())
        state = _state_of(states, day)
        now = {signal: _count_and_checksum(connection, schema, signal, day) for signal in sorted(signals)}
        rows = {signal: count for signal, (count, _checksum) in now.items()}
        recorded = {
            s: (states[(day, s)]["store_rows"], int(states[(day, s)]["store_checksum"]))
            for s in signals
            if (day, s) in states
        }
        late = any(recorded.get(s) != now[s] for s in signals)  # rows arrived after the day was archived
        size = sum(store.relation_bytes(signal, day) for signal in signals)
        if tier == "hot":
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
            store = _Store(connection, schema, archive, progress.rows if progress else None)
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


def _start_run(store: _Store, now: dt.datetime) -> int:
    row = store.connection.execute(
        sql.SQL("INSERT INTO {} (started_at) VALUES (now()) RETURNING id").format(store.table("retention_runs"))
    ).fetchone()
    assert row is not None
    return int(row[0])


def _finish_run(store: _Store, run_id: int, report: RunReport, error: str | None) -> None:
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


def _settle(store: _Store, plan_: DayPlan, policy: Policy, bound: int, report: RunReport) -> None:
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
    store: _Store, day: dt.date, signals: set[str], present: dict[dt.date, set[str]], bound: int, report: RunReport
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
    store: _Store, day: dt.date, signals: set[str], present: dict[dt.date, set[str]], bound: int, report: RunReport
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


def _rows_kept(store: _Store, day: dt.date, bound: int) -> int:
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
