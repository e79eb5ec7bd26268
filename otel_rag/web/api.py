"""The debug JSON API over the Postgres store: one trace, errors (by user), logs by time, recent and slow traces.

Every endpoint checks access first, validates its parameters (a bad one is a 400 with a message saying what is
expected), runs the parameterised queries of store/queries.py on a short-lived connection with a statement
timeout, and answers JSON. Errors are `{"error": "..."}`; database errors are logged here and never shown (no SQL
or connection details leave the server).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import psycopg
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..store import queries
from .access import AccessDenied, DebugConfig, check_access, config_of

__all__ = ["api_router"]

_logger = logging.getLogger("otel_rag.web")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m)?$")
_DURATION_UNITS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, None: 1.0}
_MAX_TEXT = 200
_NO_STORE = {"Cache-Control": "no-store"}

api_router = APIRouter()

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
        _logger.warning("debug API: the store is unreachable: %s", error)
        return _error(503, "the store is unreachable; try again shortly")
    if isinstance(error, psycopg.Error):
        _logger.exception("debug API: query failed", exc_info=error)
        return _error(500, "the store could not answer this query (the server log has the details)")
    raise error


def _answer(request: Request, query: Query) -> JSONResponse:
    """Access check, connection, the query, and every failure as a JSON error."""
    config = config_of(request)
    try:
        check_access(request, config)
        if not config.dsn:
            raise _NoStore
        with psycopg.connect(config.dsn, connect_timeout=5, options="-c statement_timeout=15000") as connection:
            payload = query(connection, config)
    except Exception as error:  # _failure maps the known ones and re-raises the rest
        return _failure(error)
    return JSONResponse(queries.to_jsonable(payload), headers=_NO_STORE)


def _text(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > _MAX_TEXT:
        raise queries.InvalidInput(f"{name} is too long (at most {_MAX_TEXT} characters)")
    return value


def _limit(value: str | None, default: int, most: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise queries.InvalidInput(f"limit must be a whole number from 1 to {most}")
    return int(value)


def parse_duration_ms(value: str | None) -> float | None:
    """`250`, `250ms`, `1.5s`, `2m` as milliseconds."""
    if value is None or value.strip() == "":
        return None
    match = _DURATION.match(value.strip().lower())
    if not match:
        raise queries.InvalidInput(f"min_duration {value!r} is not valid: use 250ms, 1.5s, 2m or milliseconds")
    return float(match[1]) * _DURATION_UNITS[match[2]]


@api_router.get("/debug/api/traces/{trace_id}")
def get_trace(request: Request, trace_id: str) -> JSONResponse:
    """One trace: the span waterfall with each span's logs, totals, and links to the trace viewer and LangSmith."""

    def query(connection: psycopg.Connection[Any], config: DebugConfig) -> dict[str, Any]:
        report = queries.debug_trace(connection, trace_id, schema=config.schema)
        payload = report.to_dict()
        langsmith = next((s.attributes.get("langsmith.url") for s in report.spans if s.depth == 0), None)
        viewer = config.trace_viewer_url.replace("{trace_id}", report.trace_id) if config.trace_viewer_url else None
        payload["links"] = {"trace_viewer": viewer, "langsmith": langsmith}
        return payload

    return _answer(request, query)


@api_router.get("/debug/api/traces")
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
            min_duration_ms=parse_duration_ms(min_duration),
            errors_only=status == "error",
            schema=config.schema,
            limit=_limit(limit, 100, 1000),
        )

    return _answer(request, query)


@api_router.get("/debug/api/errors")
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


@api_router.get("/debug/api/logs")
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
        return queries.search_logs(
            connection,
            since=_text(since, "since") or "-1h",
            until=_text(until, "until"),
            level=_text(level, "level"),
            service=_text(service, "service"),
            grep=_text(grep, "grep"),
            schema=config.schema,
            limit=_limit(limit, 500, 5000),
        )

    return _answer(request, query)
