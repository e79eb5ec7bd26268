"""The steps of the log lifecycle on one day's partitions, each with its record in the manifest.

`DayStore` exports a day's rows to the archive (all of them, or only those the archive lacks), locks a day's
partitions and checks them against the manifest, builds the day's warm set, thins, rewrites, drops and expires.
retention.py decides which step each day needs and runs them in order; this module knows the SQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from otel_rag._store.archive import Archive, ArchivedObject, arrow_type
from otel_rag._store.migrate import list_partitions

__all__ = ["ID_COLUMN", "SAMPLED_SQL", "SIGNALS", "DayStore", "count_and_checksum", "partition_name"]

SIGNALS = ("logs", "spans")
ID_COLUMN = {"logs": "record_id", "spans": "span_id"}
_EXPORT_BATCH = 16_384

# A trace (or record) id kept by the SDK's TraceIdRatioBased sampler: its low 64 bits, unsigned, below the bound.
SAMPLED_SQL = (
    "((('x' || lpad(right({column}, 16), 16, '0'))::bit(64)::bigint::numeric"
    " + CASE WHEN ('x' || lpad(right({column}, 16), 16, '0'))::bit(64)::bigint < 0"
    " THEN 18446744073709551616 ELSE 0 END) < {bound})"
)


def _ident(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def partition_name(signal: str, day: dt.date) -> str:
    return f"{signal}_{day:%Y%m%d}"


# The same sum as archive.key_checksum: first 60 bits of md5("trace|epoch_us|id"), summed.
_KEY_CHECKSUM = (
    "coalesce(sum(('x' || substr(md5(coalesce(trace_id, '') || '|' || (extract(epoch FROM time) * 1000000)::bigint"
    " || '|' || {id}::text), 1, 15))::bit(60)::bigint), 0)"
)


def count_and_checksum(
    connection: psycopg.Connection[Any], schema: str, signal: str, day: dt.date, *, checksum: bool = True
) -> tuple[int, int]:
    """The partition's row count and key checksum (0 without `checksum`: an md5 per row is the costly part)."""
    query = sql.SQL("SELECT count(*), {checksum} FROM {table}").format(
        checksum=sql.SQL(_KEY_CHECKSUM).format(id=_ident(ID_COLUMN[signal])) if checksum else sql.SQL("0"),
        table=_ident(schema, partition_name(signal, day)),
    )
    row = connection.execute(query).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


class DayStore:
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
            count, checksum = count_and_checksum(connection, self.schema, signal, day)
            state = self.states().get((day, signal))
            if state is not None and (state["store_rows"], int(state["store_checksum"])) == (count, checksum):
                return 0  # nothing new since the last record
            if objects:
                self._load_archived_keys(day, signal, objects)
            new_rows = self._export(day, signal, anti_join=bool(objects))
            part = (objects[-1]["part"] + 1) if objects else 0
            self.archive.remove_unrecorded(signal, day, part, {item["object_key"] for item in objects})
            written = self.archive.write(
                signal, day, part, schema=self._arrow_schema(signal), batches=new_rows, id_column=ID_COLUMN[signal]
            )
            if written.row_count == 0 and state is not None:
                raise RuntimeError(
                    f"{partition_name(signal, day)}: holds rows the retention records do not account for, and none that"
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
        id_column = ID_COLUMN[signal]
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
            ).format(id=_ident(ID_COLUMN[signal]))
        query = sql.SQL("SELECT {columns} FROM {table} p{where} ORDER BY trace_id NULLS LAST, time").format(
            columns=self._select_columns(signal), table=_ident(self.schema, partition_name(signal, day)), where=where
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
                sql.SQL("LOCK TABLE {} IN " + mode + " MODE").format(_ident(self.schema, partition_name(signal, day)))
            )
        states = self.states()
        for signal in signals:
            state = states.get((day, signal))
            now = count_and_checksum(self.connection, self.schema, signal, day)
            if state is None or (state["store_rows"], int(state["store_checksum"])) != now:
                return False
        return True

    def keep_traces(self, day: dt.date, present: dict[dt.date, set[str]], thinned_before: bool, bound: int) -> None:
        """The warm set of `day` as the temporary table keep_traces(trace_id)."""
        next_day = day + dt.timedelta(days=1)
        previous = day - dt.timedelta(days=1)
        selects: list[sql.Composable] = []

        def table(signal: str, which: dt.date) -> sql.Identifier:
            return _ident(self.schema, partition_name(signal, which))

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
                        sampled=sql.SQL(SAMPLED_SQL).format(
                            column=sql.Identifier("trace_id"), bound=sql.Literal(bound)
                        ),
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
            sampled = sql.SQL(SAMPLED_SQL).format(
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
            table = _ident(self.schema, partition_name(signal, day))
            cursor = self.connection.execute(
                sql.SQL("DELETE FROM {} p WHERE {}").format(table, self._not_kept(signal, bound))
            )
            removed += cursor.rowcount
            count, checksum = count_and_checksum(self.connection, self.schema, signal, day)
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
        table = _ident(self.schema, partition_name(signal, day))
        row = self.connection.execute(
            sql.SQL("SELECT count(*) FILTER (WHERE NOT ({})) FROM {} p").format(self._not_kept(signal, bound), table)
        ).fetchone()
        return int(row[0]) if row else 0

    def rewrite(self, day: dt.date, signal: str) -> int:
        """VACUUM FULL a thinned partition (no bloat left behind: the space goes back to the OS); bytes freed."""
        table = _ident(self.schema, partition_name(signal, day))
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
            (self.schema, partition_name(signal, day)),
        ).fetchone()
        return int(row[0]) if row else 0

    def drop(self, day: dt.date, signal: str) -> None:
        """Detach and drop the partition (inside the caller's locked transaction)."""
        self.connection.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                _ident(self.schema, signal), _ident(self.schema, partition_name(signal, day))
            )
        )
        self.connection.execute(sql.SQL("DROP TABLE {}").format(_ident(self.schema, partition_name(signal, day))))
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
