"""HTTP server spans for FastAPI/Starlette apps, with `X-Trace-Id` and `traceresponse` on every response.

`TracingMiddleware` is a plain ASGI middleware placed outside every other middleware (so errors turned into
500 responses by Starlette are seen as errors): one SERVER span per request, continuing an incoming W3C
`traceparent` (a malformed one starts a new trace), the user id from a header, and the
`http.server.request.duration` histogram. Unlike the stock instrumentation it creates no per-message child spans
and wraps no inner middleware, which is where most of the stock overhead goes.

`instrument_app(app)` turns it on for one app; under `opentelemetry-instrument` the distro calls
`instrument_starlette()` so that every Starlette/FastAPI app in the process gets it, with no code change. FastAPI's
own native telemetry is switched off per request while ours runs, so a request has one server span.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import metrics
from .config import EXCLUDED_URLS, FASTAPI_EXCLUDED_URLS, USER_ID_HEADER
from .tracing import ENDUSER_ID, begin_request, end_request, set_request_root

__all__ = ["TracingMiddleware", "instrument_app", "instrument_starlette"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TRACE_ID_HEADER = b"x-trace-id"
TRACERESPONSE_HEADER = b"traceresponse"
_APP_FLAG = "_otel_rag_instrumented"  # in an app instance's __dict__
_CLASS_FLAG = "_otel_rag_patched"  # on the Starlette class


class _HeaderGetter(Getter[list[tuple[bytes, bytes]]]):
    """Reads propagation headers straight from the ASGI scope's raw header list."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.encode("latin-1")
        values = [value.decode("latin-1") for name, value in carrier if name == wanted]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


_getter = _HeaderGetter()


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _route_of(scope: Scope) -> str | None:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else None


class TracingMiddleware:
    """One SERVER span per HTTP request; trace headers on the response."""

    def __init__(self, app: ASGIApp, user_id_header: str = "x-user-id") -> None:
        self.app = app
        self._user_header = user_id_header.lower().encode("latin-1")
        self._tracer: trace.Tracer | None = None

    def _get_tracer(self) -> trace.Tracer:
        # Resolved on first use, after the SDK is configured, so requests skip the API's proxy tracer.
        tracer = trace.get_tracer_provider().get_tracer("otel_rag.http")
        if not isinstance(tracer, trace.ProxyTracer):
            self._tracer = tracer
        return tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope.get("headers") or []
        parent = propagate.extract(headers, getter=_getter)
        method = scope.get("method", "GET")
        user_id = _header(headers, self._user_header)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope.get("path", ""),
            "url.scheme": scope.get("scheme", "http"),
        }
        if user_id:
            attributes[ENDUSER_ID] = user_id
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
        user_token = begin_request(user_id)  # before the span, so span processors see this request's user
        tracer = self._tracer or self._get_tracer()
        span = tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        set_request_root(span)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        span_context = span.get_span_context()
        trace_hex = format(span_context.trace_id, "032x").encode("ascii")
        traceresponse = b"00-%s-%016x-%02x" % (trace_hex, span_context.span_id, int(span_context.trace_flags))
        status_code = 500

        async def send_with_trace_headers(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                response_headers = list(message.get("headers") or ())
                response_headers.append((TRACE_ID_HEADER, trace_hex))
                response_headers.append((TRACERESPONSE_HEADER, traceresponse))
                message["headers"] = response_headers
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_trace_headers)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(span, scope, method, status_code, error, started)
            end_request(user_token, error)
            otel_context.detach(token)

    @staticmethod
    def _finish(  # noqa: PLR0917 - one call site, on the request path: positional is cheapest
        span: trace.Span, scope: Scope, method: str, status: int, error: BaseException | None, started: float
    ) -> None:
        route = _route_of(scope)
        metric_attributes: dict[str, Any] = {
            "http.request.method": method,
            "http.response.status_code": status,
            "url.scheme": scope.get("scheme", "http"),
        }
        span_attributes: dict[str, Any] = {"http.response.status_code": status}
        if route:
            metric_attributes["http.route"] = route
            span_attributes["http.route"] = route
            span.update_name(f"{method} {route}")
        if error is not None:
            span.record_exception(error)
            error_type = type(error).__qualname__
        elif status >= 500:
            error_type = str(status)
        else:
            error_type = None
        if error_type is not None:
            span_attributes["error.type"] = error_type
            span.set_status(Status(StatusCode.ERROR, error_type))
            metric_attributes["error.type"] = error_type
        span.set_attributes(span_attributes)
        span.end()
        metrics.http_server_request_duration.record(time.perf_counter() - started, metric_attributes)


_settings: dict[str, Any] = {"all_apps": False, "user_id_header": None}


@functools.lru_cache(maxsize=1)
def _excluded_pattern() -> re.Pattern[str] | None:
    """OTEL_PYTHON_FASTAPI_EXCLUDED_URLS (or OTEL_PYTHON_EXCLUDED_URLS), read at the first request."""
    return FASTAPI_EXCLUDED_URLS.read(os.environ) or EXCLUDED_URLS.read(os.environ)


_TRACED = "otel_rag.traced"  # scope key: this request already has our server span (mounted sub-apps)
_FASTAPI_NATIVE = "fastapi.telemetry"  # scope key FastAPI checks; None turns its own server span off


def _patch_call(cls: Any) -> None:
    """Route `cls.__call__` through a per-app TracingMiddleware.

    ASGI servers call `type(app).__call__`, so the outermost place we can reach without the user's help is
    the class. FastAPI's native telemetry is told to stand down for requests we trace, so there is exactly
    one server span per request.
    """
    if cls.__dict__.get(_CLASS_FLAG, False):
        return
    original_call = cls.__call__

    async def __call__(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        enabled = _settings["all_apps"] or vars(self).get(_APP_FLAG, False)
        if not enabled or scope["type"] != "http" or _TRACED in scope:
            await original_call(self, scope, receive, send)
            return
        excluded = _excluded_pattern()
        if excluded is not None and excluded.search(scope.get("path", "")):
            scope[_TRACED] = True  # not traced, by request: neither by us nor by FastAPI's own telemetry
            scope[_FASTAPI_NATIVE] = None
            await original_call(self, scope, receive, send)
            return
        middleware = vars(self).get("_otel_rag_middleware")
        if middleware is None:
            header = _settings["user_id_header"] or str(USER_ID_HEADER.read(os.environ))

            async def inner(scope: Scope, receive: Receive, send: Send) -> None:
                await original_call(self, scope, receive, send)

            middleware = TracingMiddleware(inner, user_id_header=header)
            self._otel_rag_middleware = middleware
        scope[_TRACED] = True
        scope[_FASTAPI_NATIVE] = None
        await middleware(scope, receive, send)

    cls.__call__ = __call__
    setattr(cls, _CLASS_FLAG, True)


def _patch_classes() -> bool:
    try:
        from starlette.applications import Starlette
    except ImportError:
        return False
    _patch_call(Starlette)
    try:
        from fastapi import FastAPI
    except ImportError:
        return True
    _patch_call(FastAPI)
    return True


def instrument_app(app: Any, user_id_header: str | None = None) -> Any:
    """Trace every HTTP request of this Starlette/FastAPI app (one server span, trace headers, user id).

    Safe to call twice, and together with the launcher: a request is traced once.
    """
    if user_id_header is not None:
        _settings["user_id_header"] = user_id_header
    if not _patch_classes():
        raise TypeError("instrument_app needs Starlette or FastAPI to be installed")
    setattr(app, _APP_FLAG, True)
    return app


def instrument_starlette(user_id_header: str) -> bool:
    """Trace every Starlette/FastAPI app in this process (the launcher's path: no code change in the app)."""
    _settings["user_id_header"] = user_id_header
    _settings["all_apps"] = True
    return _patch_classes()
