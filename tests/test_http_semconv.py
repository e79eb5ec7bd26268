"""The HTTP server telemetry against the stock instrumentation in its stable-conventions mode: the same requests
(a GET with a query, a POST with a body, 404, 422, 500, an unknown method, a remote parent) to the same app under
the stock FastAPI instrumentation with OTEL_SEMCONV_STABILITY_OPT_IN=http and under otel-rag give the same
attribute keys on each server span and on each HTTP metric point, and the same span names, kinds and statuses."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

import otel_rag
from tests.support.otlp import OtlpReceiver
from tests.support.parity import under_both_distros

pytestmark = pytest.mark.integration  # starts the app under both launchers

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
REQUESTS: dict[str, dict[str, Any]] = {
    "GET with a query": {"method": "GET", "path": "/items/7?q=x&sig=abc", "span_path": "/items/7"},
    "POST with a body": {"method": "POST", "path": "/items", "content": b"hello world", "span_path": "/items"},
    "404": {"method": "GET", "path": "/missing", "span_path": "/missing"},
    "422": {"method": "GET", "path": "/items/abc", "span_path": "/items/abc"},
    "500": {"method": "GET", "path": "/fail", "span_path": "/fail"},
    "unknown method": {"method": "PURGE", "path": "/items/9", "span_path": "/items/9"},
    "remote parent": {"method": "GET", "path": "/items/8", "span_path": "/items/8", "headers": {"traceparent": PARENT}},
}
HTTP_METRICS = (
    "http.server.request.duration",
    "http.server.active_requests",
    "http.server.request.body.size",
    "http.server.response.body.size",
)


def _server_spans(receiver: OtlpReceiver) -> dict[str, dict[str, Any]]:
    by_path = {}
    for span in receiver.spans:
        if span["kind"] == 2:  # SERVER
            by_path[span["attributes"].get("url.path")] = span
    return by_path


def _metric_point_keys(receiver: OtlpReceiver) -> dict[str, set[frozenset[str]]]:
    keys: dict[str, set[frozenset[str]]] = {name: set() for name in HTTP_METRICS}
    for metric in receiver.metrics:
        if metric["name"] in keys:
            keys[metric["name"]].update(frozenset(point["attributes"]) for point in metric["points"])
    return keys


def test_the_server_spans_and_http_metrics_have_the_stable_conventions_keys() -> None:
    with under_both_distros({"OTEL_SEMCONV_STABILITY_OPT_IN": "http"}, app_fails=True) as running:
        for each in running.values():
            for request in REQUESTS.values():
                httpx.request(
                    request["method"],
                    each.app.url + request["path"],
                    content=request.get("content"),
                    headers={"User-Agent": "parity-test/1.0", **request.get("headers", {})},
                    timeout=10,
                )
        time.sleep(2.0)  # spans every 100 ms, metrics every 500 ms
        spans = {name: _server_spans(each.receiver) for name, each in running.items()}
        port = running["otel_rag"].app.port
        metrics = {name: _metric_point_keys(each.receiver) for name, each in running.items()}

    differences = {}
    for label, request in REQUESTS.items():
        stock, ours = spans["stock"][request["span_path"]], spans["otel_rag"][request["span_path"]]
        stock_keys, our_keys = set(stock["attributes"]), set(ours["attributes"])
        if our_keys != stock_keys:
            differences[label] = {
                "only ours": sorted(our_keys - stock_keys),
                "only stock": sorted(stock_keys - our_keys),
            }
        assert (ours["name"], ours["status"]) == (stock["name"], stock["status"]), (label, ours, stock)
        assert (
            (ours["parent_span_id"] is not None) == (label == "remote parent") == (stock["parent_span_id"] is not None)
        )
    assert not differences, json.dumps(differences, indent=1)
    ours = spans["otel_rag"]["/items/7"]
    # A signed URL's signature: REDACTED by the conventions' rule, then [REDACTED] by our redaction of secrets.
    assert ours["attributes"]["url.query"] == "q=x&sig=[REDACTED]"
    assert (ours["attributes"]["server.address"], ours["attributes"]["server.port"]) == ("127.0.0.1", port)
    assert ours["schema_url"] == spans["stock"]["/items/7"]["schema_url"] == "https://opentelemetry.io/schemas/1.21.0"
    assert (ours["scope"], ours["scope_version"]) == ("otel_rag.http", otel_rag.__version__)
    assert ours["resource"]["telemetry.distro.name"] == "otel-rag"
    assert ours["resource"]["telemetry.distro.version"] == otel_rag.__version__

    for name in HTTP_METRICS:
        assert metrics["otel_rag"][name] == metrics["stock"][name], name
    assert metrics["otel_rag"]["http.server.request.body.size"], "a POST with a body was measured"
