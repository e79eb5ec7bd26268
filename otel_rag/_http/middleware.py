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

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.http import (
    get_custom_header_attributes,
    normalise_request_header_name,
    normalise_response_header_name,
)

from otel_rag._config.settings import active_settings
from otel_rag._telemetry import metrics
from otel_rag._telemetry.identity import HTTP_SCHEMA_URL, VERSION
from otel_rag._telemetry.tracing import ENDUSER_ID, MAX_USER_ID, begin_request, end_request, set_request_root

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


def _user_id(value: bytes) -> str | None:
    """The user id header's value as UTF-8 (invalid bytes replaced), cut to 128 characters; None when empty."""
    return value[: MAX_USER_ID * 4].decode("utf-8", "replace")[:MAX_USER_ID] or None


# The methods the HTTP conventions know (RFC 9110, 5789 and QUERY, as opentelemetry-util-http lists them); any
# other becomes "_OTHER", with the original in http.request.method_original.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Query parameters of signed URLs whose values the conventions say to replace by "REDACTED" (our redaction of
# secrets in key=value text applies to url.query as well, before export).
_SIGNED_URL_PARAMS = ("AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature")


def _method(raw: str) -> tuple[str, str | None]:
    """The method as the conventions report it, and the original when that differs."""
    if raw in _KNOWN_METHODS:
        return raw, None
    upper = raw.upper()
    return (upper if upper in _KNOWN_METHODS else "_OTHER"), raw


def _query(raw: bytes) -> str:
    query = raw.decode("latin-1")
    if any(name in query for name in _SIGNED_URL_PARAMS):
        pairs = query.split("&")
        query = "&".join(
            f"{pair.partition('=')[0]}=REDACTED" if pair.partition("=")[0] in _SIGNED_URL_PARAMS else pair
            for pair in pairs
        )
    return query


def _set_server(attributes: dict[str, Any], host: bytes | None, scope: Scope, scheme: str) -> None:
    """server.address and server.port: from the Host header (its port, else the scheme's), else the socket."""
    if host:
        text = host.decode("latin-1")
        name, colon, port = text.rpartition(":") if not text.endswith("]") else ("", "", "")
        if colon and port.isdigit() and name:
            attributes["server.address"], attributes["server.port"] = name.strip("[]"), int(port)
            return
        attributes["server.address"] = text.strip("[]")
        if scheme in _DEFAULT_PORTS:
            attributes["server.port"] = _DEFAULT_PORTS[scheme]
        return
    server = scope.get("server")
    if server:
        attributes["server.address"] = str(server[0])
        if server[1] is not None:
            attributes["server.port"] = server[1]


class _HeaderCapture:
    """OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*: headers as span attributes, the stock instrumentations' way
    (their own matching, naming and [REDACTED] sanitising, from opentelemetry-util-http)."""

    __slots__ = ("request", "response", "sanitize")

    def __init__(self, request: tuple[str, ...], response: tuple[str, ...], sanitize: tuple[str, ...]) -> None:
        self.request = list(request)
        self.response = list(response)
        self.sanitize = list(sanitize)

    def attributes(self, raw_headers: Any, patterns: list[str], normalise: Callable[[str], str]) -> dict[str, Any]:
        headers: dict[str, list[str]] = {}
        for name, value in raw_headers or ():
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        return get_custom_header_attributes(headers, patterns, self.sanitize, normalise)


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
        settings = active_settings()
        request, response = settings.capture_request_headers, settings.capture_response_headers
        self._capture = _HeaderCapture(request, response, settings.sanitize_headers) if request or response else None

    def _get_tracer(self) -> trace.Tracer:
        # Resolved on first use, after the SDK is configured, so requests skip the API's proxy tracer.
        tracer = trace.get_tracer_provider().get_tracer("otel_rag.http", VERSION, schema_url=HTTP_SCHEMA_URL)
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
        attributes, user_id, request_size = self._request_attributes(scope, headers)
        method, scheme = attributes["http.request.method"], attributes["url.scheme"]
        capture = self._capture
        user_token = begin_request(user_id)  # before the span, so span processors see this request's user
        tracer = self._tracer or self._get_tracer()
        span_name = "HTTP" if method == "_OTHER" else method
        span = tracer.start_span(span_name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        set_request_root(span)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        span_context = span.get_span_context()
        trace_hex = format(span_context.trace_id, "032x").encode("ascii")
        traceresponse = b"00-%s-%016x-%02x" % (trace_hex, span_context.span_id, int(span_context.trace_flags))
        status_code = 500
        response_size: bytes | None = None

        async def send_with_trace_headers(message: Message) -> None:
            nonlocal status_code, response_size
            if message["type"] == "http.response.start":
                status_code = message["status"]
                response_headers = list(message.get("headers") or ())
                for name, value in response_headers:
                    if name == b"content-length":
                        response_size = value
                if capture is not None and capture.response:
                    span.set_attributes(
                        capture.attributes(response_headers, capture.response, normalise_response_header_name)
                    )
                response_headers.append((TRACE_ID_HEADER, trace_hex))
                response_headers.append((TRACERESPONSE_HEADER, traceresponse))
                message["headers"] = response_headers
            await send(message)

        metrics.http_server_active_requests.add(method, scheme, 1)  # taken back in `finally`, whatever happens
        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_trace_headers)
        except BaseException as exc:
            error = exc
            raise
        finally:
            metric_attributes = self._finish(span, scope, span_name, attributes, status_code, error, started)
            metrics.http_server_active_requests.add(method, scheme, -1)
            for size, histogram in (
                (request_size, metrics.http_server_request_body_size),
                (response_size, metrics.http_server_response_body_size),
            ):
                if size is not None and size.isdigit():
                    histogram.record(int(size), metric_attributes)
            end_request(user_token, error)
            otel_context.detach(token)

    def _request_attributes(self, scope: Scope, headers: Any) -> tuple[dict[str, Any], str | None, bytes | None]:
        """The server span's request attributes (the stable HTTP conventions), the user id and Content-Length."""
        method, method_original = _method(scope.get("method", "GET"))
        scheme = scope.get("scheme", "http")
        user_id = host = user_agent = request_size = None
        user_header = self._user_header
        for name, value in headers:  # one pass for every header we read
            if name == b"host":
                host = value
            elif name == b"user-agent":
                user_agent = value
            elif name == b"content-length":
                request_size = value
            elif name == user_header and user_id is None:
                user_id = _user_id(value)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope.get("path", ""),
            "url.scheme": scheme,
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        if method_original is not None:
            attributes["http.request.method_original"] = method_original
        query = scope.get("query_string")
        if query:
            attributes["url.query"] = _query(query)
        _set_server(attributes, host, scope, scheme)
        if user_agent:
            attributes["user_agent.original"] = user_agent.decode("latin-1")
        if user_id:
            attributes[ENDUSER_ID] = user_id
        capture = self._capture
        if capture is not None and capture.request:
            attributes.update(capture.attributes(headers, capture.request, normalise_request_header_name))
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
            attributes["client.port"] = client[1]
        return attributes, user_id, request_size

    @staticmethod
    def _finish(  # noqa: PLR0917 - one call site, on the request path: positional is cheapest
        span: trace.Span,
        scope: Scope,
        span_name: str,
        request: dict[str, Any],
        status: int,
        error: BaseException | None,
        started: float,
    ) -> dict[str, Any]:
        """End the span; record the duration; return the attributes of the request's metric points."""
        route = _route_of(scope)
        metric_attributes: dict[str, Any] = {
            "http.request.method": request["http.request.method"],
            "http.response.status_code": status,
            "url.scheme": request["url.scheme"],
            "network.protocol.version": request["network.protocol.version"],
        }
        span_attributes: dict[str, Any] = {"http.response.status_code": status}
        if route:
            metric_attributes["http.route"] = route
            span_attributes["http.route"] = route
            span.update_name(f"{span_name} {route}")
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
        return metric_attributes


_all_apps = False  # under the launcher: every Starlette/FastAPI app in the process


class _AppOptions:
    """One app's options: instrument_app's arguments, else the process settings."""

    __slots__ = ("excluded", "user_id_header")

    def __init__(self, user_id_header: str | None, excluded: re.Pattern[str] | None) -> None:
        self.user_id_header = user_id_header
        self.excluded = excluded


_APP_OPTIONS = "_otel_rag_options"  # in an app instance's __dict__


def _options_of(app: Any) -> _AppOptions:
    options: _AppOptions | None = vars(app).get(_APP_OPTIONS)
    if options is None:
        settings = active_settings()
        options = _AppOptions(settings.user_id_header, settings.excluded_urls)
        setattr(app, _APP_OPTIONS, options)
    return options


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
        enabled = _all_apps or vars(self).get(_APP_FLAG, False)
        if not enabled or scope["type"] != "http" or _TRACED in scope:
            await original_call(self, scope, receive, send)
            return
        options = _options_of(self)
        excluded = options.excluded
        if excluded is not None and excluded.search(scope.get("path", "")):
            scope[_TRACED] = True  # not traced, by request: neither by us nor by FastAPI's own telemetry
            scope[_FASTAPI_NATIVE] = None
            await original_call(self, scope, receive, send)
            return
        middleware = vars(self).get("_otel_rag_middleware")
        if middleware is None:
            header = options.user_id_header or active_settings().user_id_header

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


_App = TypeVar("_App")


def instrument_app(app: _App, user_id_header: str | None = None, excluded_urls: str | None = None) -> _App:
    """Trace every HTTP request of this Starlette/FastAPI app (one server span, trace headers, user id).

    Args:
        app: the Starlette or FastAPI application.
        user_id_header: request header holding the user id, for this app only (default: OTEL_RAG_USER_ID_HEADER).
        excluded_urls: comma-separated regular expressions of paths not to trace, for this app only (default:
            OTEL_PYTHON_FASTAPI_EXCLUDED_URLS or OTEL_PYTHON_EXCLUDED_URLS).

    Returns the same app, so that `app = instrument_app(FastAPI())` reads naturally.
    Safe to call twice, and together with the launcher: a request is traced once.

    Raises:
        TypeError: Starlette is not installed.
        ValueError: `excluded_urls` is not a list of valid regular expressions.
    """
    if not _patch_classes():
        raise TypeError("instrument_app needs Starlette or FastAPI to be installed")
    settings = active_settings()
    excluded = settings.excluded_urls
    if excluded_urls is not None:
        from otel_rag._config.settings import EXCLUDED_URLS

        excluded = EXCLUDED_URLS.parse(excluded_urls)
    setattr(app, _APP_OPTIONS, _AppOptions((user_id_header or settings.user_id_header).lower(), excluded))
    vars(app).pop("_otel_rag_middleware", None)
    setattr(app, _APP_FLAG, True)
    return app


def instrument_starlette() -> bool:
    """Trace every Starlette/FastAPI app in this process (the launcher's path: no code change in the app)."""
    global _all_apps
    _all_apps = True
    return _patch_classes()
