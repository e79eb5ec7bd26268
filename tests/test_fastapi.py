"""instrument_app in-process: the middleware's span, headers, user id, metrics, and sub-apps traced once."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import otel_rag
from otel_rag.testing import CapturedTelemetry


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.get("/who")
    def who() -> dict[str, Any]:
        otel_rag.set_user("from-code")  # in a worker thread: must still reach the server span
        return {"user": "from-code"}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    async def sub_ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("sub")

    app.mount("/sub", Starlette(routes=[Route("/ok", sub_ok)]))
    return otel_rag.instrument_app(app, user_id_header="X-Tenant-User")


def _get(app: Any, path: str, **headers: str | bytes) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=cast(dict[str, str], headers))

    return asyncio.run(call())


def test_server_span_headers_route_and_user(sdk: CapturedTelemetry) -> None:
    app = _app()
    response = _get(app, "/items/7", **{"X-Tenant-User": "t-1"})
    assert response.status_code == 200
    (span,) = sdk.finished()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /items/{item_id}"
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.attributes["url.path"] == "/items/7"
    assert span.attributes["enduser.id"] == "t-1"
    assert response.headers["x-trace-id"] == format(span.context.trace_id, "032x")
    assert response.headers["traceresponse"].split("-")[2] == format(span.context.span_id, "016x")


def test_set_user_in_sync_endpoint_reaches_server_span(sdk: CapturedTelemetry) -> None:
    _get(_app(), "/who")
    (span,) = sdk.finished()
    assert span.attributes["enduser.id"] == "from-code"


def test_unhandled_exception_is_an_error_span_and_500(sdk: CapturedTelemetry) -> None:
    response = _get(_app(), "/boom")
    assert response.status_code == 500
    assert "x-trace-id" in response.headers
    (span,) = sdk.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["http.response.status_code"] == 500


def test_mounted_sub_app_is_traced_once(sdk: CapturedTelemetry) -> None:
    response = _get(_app(), "/sub/ok")
    assert response.text == "sub"
    assert len(sdk.finished()) == 1


def test_instrument_app_twice_is_harmless_and_metrics_are_recorded(sdk: CapturedTelemetry) -> None:
    app = _app()
    otel_rag.instrument_app(app)
    _get(app, "/items/1")
    _get(app, "/nope")
    assert len(sdk.finished()) == 2
    points = sdk.metric_points("http.server.request.duration")
    by_route = {(p.attributes.get("http.route"), p.attributes["http.response.status_code"]) for p in points}
    assert ("/items/{item_id}", 200) in by_route
    assert (None, 404) in by_route  # unmatched paths never become a route label (no cardinality blow-up)


def test_uninstrumented_app_is_left_alone(sdk: CapturedTelemetry) -> None:
    app = FastAPI()

    @app.get("/x")
    async def x() -> dict[str, str]:
        return {}

    response = _get(app, "/x")
    assert "x-trace-id" not in response.headers
    # FastAPI's own native telemetry may trace it; ours does not touch an app nobody instrumented.
    assert [span for span in sdk.finished() if span.instrumentation_scope.name == "otel_rag.http"] == []


def test_excluded_urls_are_not_traced(sdk: CapturedTelemetry, use_settings: Any) -> None:
    use_settings(OTEL_PYTHON_EXCLUDED_URLS="/sub/, ^/who$", OTEL_PYTHON_FASTAPI_EXCLUDED_URLS="^/items/9$")
    app = _app()
    excluded = _get(app, "/items/9")
    assert excluded.status_code == 200 and "x-trace-id" not in excluded.headers
    assert _get(app, "/who").status_code == 200  # OTEL_PYTHON_EXCLUDED_URLS is overridden by the FastAPI one
    assert _get(app, "/items/8").headers["x-trace-id"]
    assert [span.name for span in sdk.finished()] == ["GET /who", "GET /items/{item_id}"]


def test_two_apps_in_one_process_keep_their_own_options(sdk: CapturedTelemetry) -> None:
    main, admin = FastAPI(), FastAPI()
    for app in (main, admin):

        @app.get("/ping")
        async def ping() -> dict[str, str]:
            return {}

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {}

    otel_rag.instrument_app(main, user_id_header="X-Main-User", excluded_urls="^/health$")
    otel_rag.instrument_app(admin, user_id_header="X-Admin-User")
    _get(main, "/ping", **{"X-Main-User": "m", "X-Admin-User": "wrong"})
    _get(admin, "/ping", **{"X-Main-User": "wrong", "X-Admin-User": "a"})
    assert "x-trace-id" not in _get(main, "/health").headers
    assert _get(admin, "/health").headers["x-trace-id"]
    users = [span.attributes.get("enduser.id") for span in sdk.finished()]
    assert users == ["m", "a", None]
    with pytest.raises(ValueError, match="not one"):
        otel_rag.instrument_app(FastAPI(), excluded_urls="(unclosed")


def test_user_id_header_is_utf8_and_bounded(sdk: CapturedTelemetry) -> None:
    app = _app()
    _get(app, "/items/1", **{"X-Tenant-User": "Zoë-用户".encode()})
    _get(app, "/items/2", **{"X-Tenant-User": "u" * 500})
    _get(app, "/items/3", **{"X-Tenant-User": b"bad\xff\xfe"})
    users = [span.attributes["enduser.id"] for span in sdk.finished()]
    assert users == ["Zoë-用户", "u" * 128, "bad\ufffd\ufffd"]


# -- the request attributes from hostile and unusual input ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "method", "original"),
    [
        ("GET", "GET", None),
        ("get", "GET", "get"),
        ("PURGE", "_OTHER", "PURGE"),
        ("G\x00T", "_OTHER", "G\x00T"),
        ("QUERY", "QUERY", None),
        ("", "_OTHER", ""),
    ],
)
def test_methods_are_normalised_as_the_conventions_say(raw: str, method: str, original: str | None) -> None:
    from otel_rag._http.middleware import _method

    assert _method(raw) == (method, original)


@pytest.mark.parametrize(
    ("host", "scheme", "server", "expected"),
    [
        (b"example.com:8443", "https", None, {"server.address": "example.com", "server.port": 8443}),
        (b"example.com", "https", None, {"server.address": "example.com", "server.port": 443}),
        (b"[::1]:8000", "http", None, {"server.address": "::1", "server.port": 8000}),
        (b"[::1]", "http", None, {"server.address": "::1", "server.port": 80}),
        (b"host:notaport", "ws", None, {"server.address": "host:notaport"}),
        (b":80", "http", None, {"server.address": ":80", "server.port": 80}),
        (None, "http", ("10.0.0.1", 8000), {"server.address": "10.0.0.1", "server.port": 8000}),
        (None, "http", ("/run/app.sock", None), {"server.address": "/run/app.sock"}),
        (None, "http", None, {}),
    ],
)
def test_server_address_and_port_come_from_the_host_header_else_the_socket(
    host: bytes | None, scheme: str, server: Any, expected: dict[str, Any]
) -> None:
    from otel_rag._http.middleware import _set_server

    attributes: dict[str, Any] = {}
    _set_server(attributes, host, {"server": server}, scheme)
    assert attributes == expected


def test_signed_url_parameters_are_redacted_in_the_query_and_nothing_else_changes() -> None:
    from otel_rag._http.middleware import _query

    assert (
        _query(b"q=a%20b&X-Goog-Signature=s3cr3t&sig&Signature=")
        == "q=a%20b&X-Goog-Signature=REDACTED&sig=REDACTED&Signature=REDACTED"
    )
    assert _query(b"q=\xff&page=2") == "q=\xff&page=2"  # not UTF-8: read as Latin-1, never an error
    assert _query(b"signature_help=1") == "signature_help=1"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("127.0.0.1:5000", "GET", "/a?b=c", "1.1", 200),
            {"client.address": "127.0.0.1", "client.port": 5000, "url.path": "/a", "url.query": "b=c"},
        ),
        (("[::1]:5000", "GET", "/a", "2", 404), {"client.address": "::1", "client.port": 5000, "url.path": "/a"}),
        (("unix-socket", "GET", "/?", "1.1", 200), {"client.address": "unix-socket", "url.path": "/", "url.query": ""}),
    ],
)
def test_the_access_line_splits_client_and_target_into_the_conventions_fields(
    args: tuple[Any, ...], expected: dict[str, Any]
) -> None:
    from otel_rag._telemetry.logs import _access_fields

    fields = _access_fields(*args)
    assert fields.items() >= expected.items()
    assert "client.port" in fields or "client.port" not in expected
    assert fields["network.protocol.version"] == args[3] and fields["http.response.status_code"] == args[4]


def test_active_requests_count_requests_in_flight(sdk: CapturedTelemetry) -> None:
    app = _app()
    seen_inside: list[float] = []

    @app.post("/inside")
    async def inside() -> None:
        seen_inside.append(sdk.metric_total("http.server.active_requests", **{"http.request.method": "POST"}))

    before = sdk.metric_total("http.server.active_requests", **{"http.request.method": "POST"})

    async def post_inside() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await client.post("/inside")

    asyncio.run(post_inside())
    assert seen_inside == [before + 1]
    assert sdk.metric_total("http.server.active_requests", **{"http.request.method": "POST"}) == before


def test_active_requests_return_to_zero_whatever_the_outcome_and_sizes_are_measured(sdk: CapturedTelemetry) -> None:
    app = _app()
    before = sdk.metric_total("http.server.active_requests")
    sizes = sdk.metric_total("http.server.response.body.size")
    for path in ("/items/1", "/boom", "/missing", "/items/x"):  # 200, an exception (500), 404, 422
        _get(app, path)
    assert sdk.metric_total("http.server.active_requests") == before
    assert sdk.metric_total("http.server.response.body.size") - sizes == 4  # every response had a Content-Length
    points = sdk.metric_points("http.server.active_requests")
    assert {frozenset(point.attributes) for point in points} == {frozenset({"http.request.method", "url.scheme"})}


def test_captured_headers_from_hostile_input_never_fail_a_request_and_secrets_stay_out(
    sdk: CapturedTelemetry, use_settings: Any
) -> None:
    use_settings(
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=".*",
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE="content-.*",
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS="x-session.*",
    )
    app = _app()
    hostile: dict[str, str | bytes] = {"X-Odd": b"\xff\xfe not utf-8", "X-Huge": "h" * 20_000, "X-Session-Id": "s-1"}
    response = _get(app, "/items/7", **hostile)
    assert response.status_code == 200
    (span,) = sdk.finished()
    attributes = span.attributes
    assert attributes["http.request.header.x_odd"] == ("\xff\xfe not utf-8",)  # read as Latin-1, never an error
    assert attributes["http.request.header.x_huge"] == ("h" * 20_000,)
    assert attributes["http.request.header.x_session_id"] == ("[REDACTED]",)  # the stock sanitising
    assert attributes["http.response.header.content_type"] == ("application/json",)
    assert "http.response.header.x_trace_id" not in attributes  # only what the app sent, as the stock one sees it
