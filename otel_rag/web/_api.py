"""The debug JSON API over the Postgres store: one trace, errors (by user), logs by time, recent and slow traces.

Every endpoint checks access first, validates its parameters (a bad one is a 400 with a message saying what is
expected), runs the parameterised queries of store/queries.py on a short-lived connection with a statement
timeout, and answers JSON. Errors are `{"error": "..."}`; database errors are logged here and never shown (no SQL
or connection details leave the server). Answers are bounded: long values are cut, a trace shows at most
MAX_SPANS spans, and a body over MAX_BODY bytes is refused with a 413 that says how to get the whole trace. The
OpenAPI schema documents every answer (schemathesis checks the API against it in the tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from fastapi import APIRouter
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otel_rag._store import problems, queries
from otel_rag.web._access import AccessDenied, DebugConfig, check_access, config_of

__all__ = ["api_router"]

_logger = logging.getLogger("otel_rag.web")
_MAX_TEXT = 200
_NO_STORE = {"Cache-Control": "no-store"}
MAX_VALUE = 4096  # characters of one string in an answer (attribute values, messages)
MAX_SPANS = 5000  # spans of one trace in an answer
MAX_BODY = 16 * 1024 * 1024  # bytes of one answer

api_router = APIRouter()


class ErrorAnswer(BaseModel):
    error: str


class TraceAnswer(BaseModel):
    """One trace: queries.TraceReport as JSON, with links and whether spans were left out."""

    trace_id: str
    start: str
    duration_ms: float
    spans: list[dict[str, Any]]
    orphan_logs: list[dict[str, Any]]
    services: list[str]
    user_ids: list[str]
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    slowest_stage: str | None
    links: dict[str, str | None]
    truncated: bool
    from_archive: bool  # read from the retention archive: the trace has left Postgres


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer, "description": description}
    for status, description in (
        (400, "a parameter is not valid"),
        (401, "the bearer token is missing or wrong"),
        (403, "no token configured, or not a local client"),
        (404, "no such trace"),
        (413, "the answer would be too large"),
        (500, "the store failed to answer (details in the server log)"),
        (503, "no store configured, or the store is unreachable or refused the configured role"),
    )
}


def _answers(model: Any) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model}, **_ERRORS}


Query = Callable[[psycopg.Connection[Any], DebugConfig], Any]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={**_NO_STORE, **(headers or {})})


class _NoStore(Exception):
    pass


def _failure(error: Exception) -> JSONResponse:
    """The JSON answer for a failed request; unexpected exceptions propagate (the server logs them)."""
    if isinstance(error, AccessDenied):
        headers = {"WWW-Authenticate": 'Bearer realm="otel-rag debug"'} if error.status == 401 else None
        return _error(error.status, str(error), headers)
    if isinstance(error, _NoStore):
        return _error(503, "no store configured: set OTEL_RAG_DEBUG_DSN (or OTEL_RAG_POSTGRES_DSN)")
    if isinstance(error, queries.InvalidInput):
        return _error(400, str(error))
    if isinstance(error, queries.TraceNotFound):
        return _error(404, str(error))
    if isinstance(error, psycopg.OperationalError):
        return _store_unavailable(error)
    if isinstance(error, psycopg.Error):
        _logger.exception("debug API: query failed", exc_info=error)
        return _error(500, "the store could not answer this query (the server log has the details)")
    raise error


def _store_unavailable(error: psycopg.OperationalError) -> JSONResponse:
    if problems.refused_credentials(error):
        _logger.error("debug API: the store refused the configured role: %s", problems.describe(error))
        return _error(503, "the store refused the configured role: check the user and password of OTEL_RAG_DEBUG_DSN")
    _logger.warning("debug API: the store is unreachable: %s", problems.describe(error))
    return _error(503, "the store is unreachable; try again shortly")


def _ask_store(request: Request, query: Query) -> tuple[Any, JSONResponse | None]:
    """Access check, connection and the query: (its result, None), or (None, the failure as a JSON error)."""
    config = config_of(request)
    try:
        check_access(request, config)
        if not config.dsn:
            raise _NoStore
        with psycopg.connect(config.dsn, connect_timeout=5, options="-c statement_timeout=15000") as connection:
            return query(connection, config), None
    except Exception as error:  # _failure maps the known ones and re-raises the rest
        return None, _failure(error)


def _answer(request: Request, query: Query) -> JSONResponse:
    """The query's answer as JSON, bounded in size; every failure as a JSON error."""
    payload, failure = _ask_store(request, query)
    if failure is not None:
        return failure
    response = JSONResponse(_cut_strings(queries.to_jsonable(payload)), headers=_NO_STORE)
    if len(response.body) > MAX_BODY:
        return _error(413, "this answer is too large to show here: narrow it, or use `otel-rag trace <id> --json`")
    return response


def _cut_strings(value: Any) -> Any:
    """Every string of an answer at most MAX_VALUE characters (cut ones say how much was left out)."""
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE else f"{value[:MAX_VALUE]}...[cut {len(value) - MAX_VALUE} characters]"
    if isinstance(value, dict):
        return {_cut_strings(key): _cut_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut_strings(item) for item in value]
    return value


def _text(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > _MAX_TEXT:
        raise queries.InvalidInput(f"{name} is too long (at most {_MAX_TEXT} characters)")
    if "\x00" in value or not value.isprintable():
        raise queries.InvalidInput(f"{name} may not contain control characters")
    return value


def _limit(value: str | None, default: int, most: int) -> int:
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 7) or not 1 <= int(value) <= most:
        raise queries.InvalidInput(f"limit must be a whole number from 1 to {most}")
    return int(value)


def _prometheus_text(figures: dict[str, Any] | None) -> str:
    """The retention job's figures in the Prometheus text format (nothing when no run was ever recorded, so an
    alert on them never fires for a store that does not use retention)."""
    if figures is None:
        return ""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.extend((f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"))
        lines.extend(f"{name}{labels} {value:.17g}" for labels, value in samples)

    metric(
        "otel_rag_retention_last_success_timestamp_seconds",
        "gauge",
        "When the last successful retention run finished (0: none succeeded).",
        [("", figures["last_success"])],
    )
    metric(
        "otel_rag_retention_last_run_timestamp_seconds",
        "gauge",
        "When the last retention run started.",
        [("", figures["last_run"])],
    )
    metric(
        "otel_rag_retention_last_run_ok",
        "gauge",
        "1 when the last retention run succeeded.",
        [("", 1.0 if figures["last_run_ok"] else 0.0)],
    )
    metric(
        "otel_rag_retention_rows_total",
        "counter",
        "Rows archived, removed by thinning and dropped with their partition, by every retention run.",
        [(f'{{action="{action}"}}', float(count)) for action, count in sorted(figures["rows"].items())],
    )
    metric(
        "otel_rag_retention_freed_bytes_total",
        "counter",
        "Postgres bytes freed by retention runs.",
        [("", float(figures["bytes_freed"]))],
    )
    metric(
        "otel_rag_retention_days",
        "gauge",
        "Days (and signals) in each retention state.",
        [(f'{{state="{state}"}}', float(count)) for state, count in sorted(figures["days"].items())],
    )
    return "\n".join(lines) + "\n"


@api_router.get("/debug/metrics", include_in_schema=False)
def retention_metrics(request: Request) -> Response:
    """The retention job's health for Prometheus (same access as the API: the bearer token, or local clients)."""
    from otel_rag._store.retention import run_figures

    figures, failure = _ask_store(request, lambda connection, config: run_figures(connection, config.schema))
    if failure is not None:
        return failure
    return Response(_prometheus_text(figures), media_type="text/plain; version=0.0.4", headers=_NO_STORE)


@api_router.get("/debug/api/traces/{trace_id}", responses=_answers(TraceAnswer))
def get_trace(request: Request, trace_id: str) -> JSONResponse:
    """One trace: the span waterfall with each span's logs, totals, and links to the trace viewer and LangSmith."""

    def query(connection: psycopg.Connection[Any], config: DebugConfig) -> dict[str, Any]:
        from_archive = False
        try:
            report = queries.debug_trace(connection, trace_id, schema=config.schema)
        except queries.TraceNotFound:
            if not config.archive_url:
                raise
            report, from_archive = _archived_trace(connection, config, trace_id), True
        truncated = len(report.spans) > MAX_SPANS
        report.spans = report.spans[:MAX_SPANS]
        payload = report.to_dict()
        langsmith = next((s.attributes.get("rag.langsmith.url") for s in report.spans if s.depth == 0), None)
        viewer = config.trace_viewer_url.replace("{trace_id}", report.trace_id) if config.trace_viewer_url else None
        payload["links"] = {"trace_viewer": viewer, "langsmith": langsmith if isinstance(langsmith, str) else None}
        payload["truncated"] = truncated
        payload["from_archive"] = from_archive
        return payload

    return _answer(request, query)


def _archive(config: DebugConfig) -> Any:
    """The configured archive, or None (none configured, or pyarrow is not installed: logged)."""
    if not config.archive_url:
        return None
    from otel_rag._store.archive import Archive

    try:
        return Archive(config.archive_url)
    except RuntimeError as error:
        _logger.warning("debug API: the archive is not read: %s", error)
        return None


def _archived_trace(connection: psycopg.Connection[Any], config: DebugConfig, trace_id: str) -> queries.TraceReport:
    """A trace that has left Postgres, from the archive (the same report, read from temporary tables)."""
    from otel_rag._store.from_archive import load_trace, temporary_store

    trace_id = queries.validate_trace_id(trace_id)
    archive = _archive(config)
    if archive is None:
        raise queries.TraceNotFound(f"trace {trace_id} is not in the store (the archive cannot be read here)")
    with temporary_store(connection, config.schema) as temporary:
        if not load_trace(connection, config.schema, archive, trace_id):
            raise queries.TraceNotFound(f"trace {trace_id} is neither in the store nor in the archive")
        return queries.debug_trace(connection, trace_id, schema=temporary)


@api_router.get("/debug/api/traces", responses=_answers(list[queries.TraceSummary]))
def list_traces(
    request: Request,
    *,
    since: str | None = None,
    until: str | None = None,
    min_duration: str | None = None,
    status: str | None = None,
    limit: str | None = None,
) -> JSONResponse:
    """Recent traces (root spans), newest first; `min_duration=2s` for slow ones, `status=error` for failed ones."""

    def query(connection: psycopg.Connection[Any], config: DebugConfig) -> Any:
        if status not in (None, "", "error", "any"):
            raise queries.InvalidInput(f"status {status!r} is not valid; accepted: error, any")
        return queries.recent_traces(
            connection,
            since=_text(since, "since") or "-1h",
            until=_text(until, "until"),
            min_duration_ms=queries.parse_duration_ms(min_duration, "min_duration"),
            errors_only=status == "error",
            schema=config.schema,
            limit=_limit(limit, 100, 1000),
        )

    return _answer(request, query)


@api_router.get("/debug/api/errors", responses=_answers(list[queries.ErrorEntry]))
def list_errors(
    request: Request,
    *,
    user: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: str | None = None,
) -> JSONResponse:
    """Error spans and error log lines, newest first: one user's (`user=`) or everybody's."""

    def query(connection: psycopg.Connection[Any], config: DebugConfig) -> Any:
        return queries.find_errors(
            connection,
            _text(user, "user"),
            since=_text(since, "since") or "-24h",
            until=_text(until, "until"),
            schema=config.schema,
            limit=_limit(limit, 200, 1000),
        )

    return _answer(request, query)


@api_router.get("/debug/api/logs", responses=_answers(list[queries.LogLine]))
def list_logs(
    request: Request,
    *,
    since: str | None = None,
    until: str | None = None,
    level: str | None = None,
    service: str | None = None,
    grep: str | None = None,
    limit: str | None = None,
) -> JSONResponse:
    """Log lines in a time range, oldest first (what changed at 3pm), filtered by level, service and text."""

    def query(connection: psycopg.Connection[Any], config: DebugConfig) -> Any:
        from otel_rag._store.from_archive import search_logs

        lines, _boundary = search_logs(  # days that have left Postgres are read from the archive
            connection,
            config.schema,
            _archive(config),
            since=_text(since, "since") or "-1h",
            until=_text(until, "until"),
            level=_text(level, "level"),
            service=_text(service, "service"),
            grep=_text(grep, "grep"),
            limit=_limit(limit, 500, 5000),
        )
        return lines

    return _answer(request, query)
