"""The questions users ask the store, as functions: one trace's story, a user's errors, a trace's cost, logs by time.

Each takes a DSN (the reader role is enough) and validated inputs, runs parameterised SQL only, and returns plain
dataclasses that the CLI prints as a table or as JSON and the debug web API serves as they are.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

__all__ = [
    "CostLine",
    "ErrorEntry",
    "InvalidInput",
    "LogLine",
    "SpanNode",
    "TraceNotFound",
    "TraceReport",
    "TraceSummary",
    "debug_trace",
    "find_errors",
    "parse_time",
    "recent_traces",
    "search_logs",
    "time_range",
    "trace_cost",
    "validate_trace_id",
]

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LEVELS = {"debug": 5, "info": 9, "warning": 13, "warn": 13, "error": 17, "critical": 21}


_BUCKET = re.compile(r"^(\d{1,4})\s*(s|m|h|d)$", re.ASCII)
_BUCKET_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)\s*(ms|s|m)?")
_DURATION_UNITS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, None: 1.0}


class InvalidInput(ValueError):
    """A query argument is malformed; the message says what is expected."""


class TraceNotFound(LookupError):
    pass


def validate_trace_id(trace_id: str) -> str:
    value = trace_id.strip().lower()
    if not _TRACE_ID.fullmatch(value) or value == "0" * 32:
        raise InvalidInput(f"trace id {trace_id!r} is not valid: expected 32 hexadecimal characters")
    return value


_EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


def parse_time(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """`-15m`/`-2h`/`-1d`, `now`, a time of today (`15:00`, local), or an ISO 8601 date or timestamp, from 1970 to
    the year 9000 (InvalidInput otherwise)."""
    now = now or dt.datetime.now().astimezone()
    value = text.strip()
    problem = f"cannot read time {text!r}: use -15m, -2h, -1d, now, 15:00 (today) or an ISO timestamp"
    if "\x00" in value or not value.isascii():
        raise InvalidInput(problem)
    try:
        parsed = _parse_time(value, now)
    except (ValueError, OverflowError):
        raise InvalidInput(problem) from None
    if not _EARLIEST <= parsed <= _LATEST:
        raise InvalidInput(f"time {text!r} is out of range: from 1970 to the year 9000")
    return parsed


def _parse_time(value: str, now: dt.datetime) -> dt.datetime:
    if value == "now":
        return now
    relative = _RELATIVE.match(value)
    if relative:
        return now - dt.timedelta(seconds=float(relative[1]) * _UNITS[relative[2]])
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", value):
        parts = [int(p) for p in value.split(":")]
        return now.replace(hour=parts[0], minute=parts[1], second=parts[2] if len(parts) > 2 else 0, microsecond=0)
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.astimezone()


def parse_duration_ms(value: str | None, name: str = "duration") -> float | None:
    """`250`, `250ms`, `1.5s`, `2m` as milliseconds; an error names the option or parameter (`name`)."""
    if value is None or value.strip() == "":
        return None
    match = _DURATION.fullmatch(value.strip().lower()) if value.isascii() else None
    if not match:
        raise InvalidInput(f"{name} {value!r} is not valid: use 250ms, 1.5s, 2m or milliseconds")
    return float(match[1]) * _DURATION_UNITS[match[2]]


def parse_bucket(text: str, name: str = "bucket") -> dt.timedelta:
    """`30s`, `10m`, `1h`, `1d` as a time bucket; an error names the option or parameter (`name`)."""
    match = _BUCKET.match(text.strip().lower())
    if not match or int(match[1]) == 0:
        raise InvalidInput(f"{name} {text!r} is not valid: use 30s, 10m, 1h or 1d")
    return dt.timedelta(seconds=int(match[1]) * _BUCKET_UNITS[match[2]])


def time_range(since: str | dt.datetime | None, until: str | dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """[since, until) as aware datetimes: relative forms (-15m), times of today (15:00) or ISO; since defaults to
    24 hours ago, until to now."""
    now = dt.datetime.now().astimezone()
    start = parse_time(since, now) if isinstance(since, str) else since or now - dt.timedelta(hours=24)
    end = parse_time(until, now) if isinstance(until, str) else until or now
    if end <= start:
        raise InvalidInput(
            f"the time range is empty: until ({end.isoformat()}) is not after since ({start.isoformat()})"
        )
    return start, end


@dataclass
class LogLine:
    time: dt.datetime
    level: str
    logger: str | None
    message: str | None
    trace_id: str | None
    span_id: str | None
    service: str
    user_id: str | None
    attributes: dict[str, Any]


@dataclass
class SpanNode:
    span_id: str
    parent_span_id: str | None
    name: str
    service: str
    kind: str
    status: str
    status_message: str | None
    start: dt.datetime
    offset_ms: float
    duration_ms: float
    depth: int
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    cost_usd: float | None
    input_tokens: int | None
    output_tokens: int | None
    logs: list[LogLine] = field(default_factory=list)

    @property
    def stage(self) -> str:
        return str(self.attributes.get("rag.stage") or self.name)


@dataclass
class TraceReport:
    trace_id: str
    start: dt.datetime
    duration_ms: float
    spans: list[SpanNode]  # depth-first, children by start time
    orphan_logs: list[LogLine]  # logs of the trace not attached to a stored span
    services: list[str]
    user_ids: list[str]
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    slowest_stage: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(to_jsonable(self))


@dataclass
class ErrorEntry:
    time: dt.datetime
    source: str  # "span" or "log"
    trace_id: str | None
    span_id: str | None
    service: str
    user_id: str | None
    name: str | None
    message: str | None
    error_type: str | None


@dataclass
class TraceSummary:
    trace_id: str
    time: dt.datetime
    name: str  # the root span's: `POST /documents`
    service: str
    user_id: str | None
    duration_ms: float
    status: str
    status_message: str | None
    errors: int  # spans with error status in the trace


@dataclass
class CostLine:
    stage: str
    spans: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    models: list[str]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def to_jsonable(value: Any) -> Any:
    """Dataclasses (and lists of them) as JSON-ready values."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return _jsonable(asdict(value))
    return _jsonable(value)


Target = str | psycopg.Connection[Any]


@contextlib.contextmanager
def _connected(target: Target) -> Iterator[psycopg.Connection[Any]]:
    """A DSN opens a connection for the call; an open connection (a pool's, a server's) is used as it is."""
    if isinstance(target, str):
        with psycopg.connect(target) as connection:
            yield connection
    else:
        yield target


def _table(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


def _log_line(row: dict[str, Any]) -> LogLine:
    return LogLine(
        time=row["time"],
        level=row["severity"],
        logger=row["logger"],
        message=row["body"],
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        service=row["service_name"],
        user_id=row["user_id"],
        attributes=row["attributes"],
    )


# -- the SQL, one builder per question (the tests EXPLAIN these to check index use) ------------------------------


def trace_spans_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "SELECT span_id, parent_span_id, name, service_name, kind, status, status_message, time, "
        "duration_ms, attributes, events, cost_usd, input_tokens, output_tokens, user_id "
        "FROM {} WHERE trace_id = %s ORDER BY time, span_id"
    ).format(_table(schema, "spans"))


def trace_logs_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "SELECT time, severity, logger, body, trace_id, span_id, service_name, user_id, attributes "
        "FROM {} WHERE trace_id = %s ORDER BY time, record_id"
    ).format(_table(schema, "logs"))


def user_errors_sql(schema: str, any_user: bool = False) -> sql.Composed:
    """Errors of one user (or of every user, `any_user`), logs and spans together, newest first."""
    user = sql.SQL("" if any_user else "user_id = %(user)s AND ")
    return sql.SQL(
        "(SELECT time, 'log' AS source, trace_id, span_id, service_name, user_id, logger AS name, "
        "concat_ws(': ', body, attributes->>'exception.message') AS message, "
        "coalesce(attributes->>'exception.type', attributes->>'error.type') AS error_type FROM {logs} "
        "WHERE {user}time >= %(start)s AND time < %(end)s AND severity_number >= 17) "
        "UNION ALL "
        "(SELECT time, 'span', trace_id, span_id, service_name, user_id, name, status_message, "
        "attributes->>'error.type' FROM {spans} "
        "WHERE {user}time >= %(start)s AND time < %(end)s AND status = 'ERROR') "
        "ORDER BY time DESC LIMIT %(limit)s"
    ).format(logs=_table(schema, "logs"), spans=_table(schema, "spans"), user=user)


def recent_traces_sql(schema: str, min_duration: bool, errors_only: bool) -> sql.Composed:
    """Traces in a time range by their root span, newest first; optionally slow ones, or traces with an error.

    A trace's root is its earliest span whose parent is not stored in the trace: a span without a parent, or one
    whose parent is remote (the request came with a traceparent) unless that parent is stored too (a call from
    another service writing to the same store). The partial index spans_roots_time finds the candidates.
    """
    spans = _table(schema, "spans")
    conditions: list[sql.Composable] = []
    if min_duration:
        conditions.append(sql.SQL("duration_ms >= %(min_duration_ms)s"))
    if errors_only:
        conditions.append(
            sql.SQL(
                "trace_id IN (SELECT trace_id FROM {} WHERE status = 'ERROR' AND time >= %(start)s AND time < %(end)s)"
            ).format(spans)
        )
    return sql.SQL(
        "SELECT trace_id, time, name, service_name AS service, user_id, duration_ms, status, status_message, "
        "(SELECT count(*) FROM {spans} AS s WHERE s.trace_id = r.trace_id AND s.time >= r.time "
        "AND s.status = 'ERROR') AS errors "
        "FROM (SELECT DISTINCT ON (c.trace_id) c.* FROM {spans} AS c "
        "WHERE (c.parent_span_id IS NULL OR c.parent_remote) AND c.time >= %(start)s AND c.time < %(end)s "
        "AND NOT EXISTS (SELECT 1 FROM {spans} AS p WHERE p.trace_id = c.trace_id AND p.span_id = c.parent_span_id) "
        "ORDER BY c.trace_id, c.time) AS r "
        "WHERE {conditions} ORDER BY time DESC LIMIT %(limit)s"
    ).format(spans=spans, conditions=sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true"))


def trace_cost_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "SELECT coalesce(attributes->>'rag.stage', name) AS stage, count(*) AS spans, "
        "coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens, "
        "sum(cost_usd) AS cost_usd, "
        "array_remove(array_agg(DISTINCT attributes->>'gen_ai.request.model'), NULL) AS models "
        "FROM {} WHERE trace_id = %s GROUP BY 1 ORDER BY sum(cost_usd) DESC NULLS LAST, 1"
    ).format(_table(schema, "spans"))


def logs_sql(schema: str, conditions: Sequence[sql.Composable]) -> sql.Composed:
    return sql.SQL(
        "SELECT time, severity, logger, body, trace_id, span_id, service_name, user_id, attributes "
        "FROM {} WHERE {} ORDER BY time, record_id LIMIT %(limit)s"
    ).format(_table(schema, "logs"), sql.SQL(" AND ").join(conditions))


# -- the questions ----------------------------------------------------------------------------------------------


def debug_trace(dsn: Target, trace_id: str, schema: str = "otel_rag") -> TraceReport:
    """The span tree of one trace with start offsets and durations, each span's logs in order, and totals."""
    trace_id = validate_trace_id(trace_id)
    with _connected(dsn) as connection, connection.cursor(row_factory=dict_row) as cursor:
        span_rows = cursor.execute(trace_spans_sql(schema), (trace_id,)).fetchall()
        log_rows = cursor.execute(trace_logs_sql(schema), (trace_id,)).fetchall()
    if not span_rows and not log_rows:
        raise TraceNotFound(f"trace {trace_id} is not in the store (yet?)")
    return _build_report(trace_id, span_rows, [_log_line(row) for row in log_rows])


def _build_report(trace_id: str, span_rows: list[dict[str, Any]], logs: list[LogLine]) -> TraceReport:
    starts = [row["time"] for row in span_rows] + [line.time for line in logs]
    start = min(starts)
    nodes = {
        row["span_id"]: SpanNode(
            span_id=row["span_id"],
            parent_span_id=row["parent_span_id"],
            name=row["name"],
            service=row["service_name"],
            kind=row["kind"],
            status=row["status"],
            status_message=row["status_message"],
            start=row["time"],
            offset_ms=(row["time"] - start).total_seconds() * 1000,
            duration_ms=row["duration_ms"],
            depth=0,
            attributes=row["attributes"],
            events=row["events"],
            cost_usd=_float(row["cost_usd"]),
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
        )
        for row in span_rows
    }
    orphans: list[LogLine] = []
    for line in logs:
        node = nodes.get(line.span_id or "")
        (node.logs if node else orphans).append(line)
    children: dict[str | None, list[SpanNode]] = {}
    for node in nodes.values():
        parent = node.parent_span_id if node.parent_span_id in nodes else None
        children.setdefault(parent, []).append(node)
    ordered: list[SpanNode] = []

    def walk(parent: str | None, depth: int) -> None:
        for node in sorted(children.get(parent, []), key=lambda n: (n.start, n.span_id)):
            node.depth = depth
            ordered.append(node)
            walk(node.span_id, depth + 1)

    walk(None, 0)
    costs = [node.cost_usd for node in ordered if node.cost_usd is not None]
    parents = {n.parent_span_id for n in ordered}
    leaves = [n for n in ordered if n.span_id not in parents] or ordered  # the stages doing the work
    slowest = max(leaves, key=lambda n: n.duration_ms, default=None)
    return TraceReport(
        trace_id=trace_id,
        start=start,
        duration_ms=max(
            [n.offset_ms + n.duration_ms for n in nodes.values()]
            + [(line.time - start).total_seconds() * 1000 for line in logs]
        ),
        spans=ordered,
        orphan_logs=orphans,
        services=sorted({n.service for n in ordered} | {line.service for line in logs}),
        user_ids=sorted(
            {row["user_id"] for row in span_rows if row["user_id"]} | {x.user_id for x in logs if x.user_id}
        ),
        errors=sum(1 for n in ordered if n.status == "ERROR")
        + sum(1 for x in logs if x.level in ("error", "critical")),
        input_tokens=sum(n.input_tokens or 0 for n in ordered),
        output_tokens=sum(n.output_tokens or 0 for n in ordered),
        cost_usd=sum(costs) if costs else None,
        slowest_stage=slowest.stage if slowest else None,
    )


def find_errors(
    dsn: Target,
    user_id: str | None,
    *,
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
    schema: str = "otel_rag",
    limit: int = 200,
) -> list[ErrorEntry]:
    """Error spans and error log lines of one user (None: every user) in a time range (default: the last 24 hours),
    newest first."""
    if user_id is not None and not user_id.strip():
        raise InvalidInput("a user id is required")
    start, end = time_range(since, until)
    query = user_errors_sql(schema, any_user=user_id is None)
    with _connected(dsn) as connection, connection.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(query, {"user": user_id, "start": start, "end": end, "limit": limit}).fetchall()
    return [
        ErrorEntry(
            time=row["time"],
            source=row["source"],
            trace_id=row["trace_id"],
            span_id=row["span_id"],
            service=row["service_name"],
            user_id=row["user_id"],
            name=row["name"],
            message=row["message"],
            error_type=row["error_type"],
        )
        for row in rows
    ]


def trace_cost(dsn: Target, trace_id: str, schema: str = "otel_rag") -> list[CostLine]:
    """Cost and tokens of one trace by stage (spans only: a stage's log events repeat its span's figures)."""
    trace_id = validate_trace_id(trace_id)
    query = trace_cost_sql(schema)
    with _connected(dsn) as connection, connection.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(query, (trace_id,)).fetchall()
    if not rows:
        raise TraceNotFound(f"trace {trace_id} has no spans in the store")
    return [
        CostLine(
            stage=row["stage"],
            spans=row["spans"],
            input_tokens=int(row["input_tokens"]),
            output_tokens=int(row["output_tokens"]),
            cost_usd=_float(row["cost_usd"]),
            models=list(row["models"]),
        )
        for row in rows
    ]


def search_logs(
    dsn: Target,
    *,
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
    service: str | None = None,
    level: str | None = None,
    grep: str | None = None,
    schema: str = "otel_rag",
    limit: int = 1000,
) -> list[LogLine]:
    """Log lines in a time range (default: the last hour), oldest first, filtered by service, level and text."""
    if since is None:
        since = "-1h"
    start, end = time_range(since, until)
    conditions = [sql.SQL("time >= %(start)s"), sql.SQL("time < %(end)s")]
    params: dict[str, Any] = {"start": start, "end": end, "limit": limit}
    if service:
        conditions.append(sql.SQL("service_name = %(service)s"))
        params["service"] = service
    if level:
        if level.lower() not in _LEVELS:
            raise InvalidInput(f"level {level!r} is not valid; accepted: {', '.join(sorted(set(_LEVELS)))}")
        conditions.append(sql.SQL("severity_number >= %(level)s"))
        params["level"] = _LEVELS[level.lower()]
    if grep:
        conditions.append(sql.SQL("(body ILIKE %(grep)s OR attributes::text ILIKE %(grep)s)"))
        params["grep"] = "%" + grep.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = logs_sql(schema, conditions)
    with _connected(dsn) as connection, connection.cursor(row_factory=dict_row) as cursor:
        return [_log_line(row) for row in cursor.execute(query, params).fetchall()]


def recent_traces(
    dsn: Target,
    *,
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
    min_duration_ms: float | None = None,
    errors_only: bool = False,
    schema: str = "otel_rag",
    limit: int = 100,
) -> list[TraceSummary]:
    """Traces (their root spans) in a time range (default: the last hour), newest first: the slow ones with
    `min_duration_ms`, those with an error span with `errors_only`."""
    if min_duration_ms is not None and min_duration_ms < 0:
        raise InvalidInput("the minimum duration cannot be negative")
    start, end = time_range(since or "-1h", until)
    query = recent_traces_sql(schema, min_duration=min_duration_ms is not None, errors_only=errors_only)
    params = {"start": start, "end": end, "min_duration_ms": min_duration_ms, "limit": limit}
    with _connected(dsn) as connection, connection.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(query, params).fetchall()
    return [TraceSummary(**row) for row in rows]
