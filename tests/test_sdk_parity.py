"""Standard OTEL_* variables mean what they mean under the stock distro: the same small app, run under the stock
`opentelemetry-distro` (with the stock FastAPI and logging instrumentations) and under ours, side by side, for
each variable; what each exports (server span or not, its captured headers, log records, the correlation fields
on stdlib records) must agree. The differences that remain on purpose are listed in docs/configuration.md."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.otlp import OtlpReceiver
from tests.support.parity import under_both_distros

pytestmark = pytest.mark.integration  # starts the app under both launchers

_CLIENT_INSTRUMENTATIONS = "httpx,httpx2,requests,urllib3,psycopg"
_HEADERS = {"X-Custom": "custom value", "Authorization": "Bearer not-for-export"}

CASES: dict[str, dict[str, str]] = {
    "defaults": {},
    "sdk disabled by 1 (not the spec's true)": {"OTEL_SDK_DISABLED": "1"},
    "sdk disabled by true": {"OTEL_SDK_DISABLED": "TRUE"},
    "ratio sampler with an argument out of range": {
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "2",
    },
    "sampler that is not installed": {"OTEL_TRACES_SAMPLER": "parentbased_jaeger_remote"},
    "fastapi instrumentation disabled": {
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": f"{_CLIENT_INSTRUMENTATIONS},fastapi"
    },
    "every instrumentation disabled": {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*"},
    "log correlation": {"OTEL_PYTHON_LOG_CORRELATION": "true"},
    "logs exporter none": {"OTEL_LOGS_EXPORTER": "none"},
    "header capture": {
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "x-custom,Authorization",
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": "x-ans.*,set-cookie",
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": "set-cookie,authorization",
    },
}


def _summary(receiver: OtlpReceiver, records_file: Path, answered: int) -> dict[str, Any]:
    """What left the process, in terms both distros must agree on."""
    servers = [span for span in receiver.spans if span["kind"] == 2 and span["name"] == "GET /work"]  # SERVER
    trace_id = servers[0]["trace_id"] if servers else None
    correlation = [json.loads(line) for line in records_file.read_text().splitlines()] if records_file.exists() else []
    fields = correlation[0] if correlation else {}
    return {
        "answered": answered,
        # FastAPI's own telemetry makes a server span when no instrumentation does (scope "fastapi")
        "server spans": sorted("fastapi's own" if span["scope"] == "fastapi" else "instrumented" for span in servers),
        "captured headers": {
            key: value
            for span in servers
            for key, value in span["attributes"].items()
            if key.startswith(("http.request.header.", "http.response.header."))
        },
        "work log exported": any(record["body"] == "work done" for record in receiver.logs),
        "work log in the request's trace": any(
            record["body"] == "work done" and record["trace_id"] == trace_id for record in receiver.logs
        ),
        "correlation fields": {
            "trace id is the request's": fields.get("otelTraceID") == trace_id
            if trace_id
            else fields.get("otelTraceID"),
            "span id set": fields.get("otelSpanID") not in (None, "0"),
            "sampled": fields.get("otelTraceSampled"),
            "service": fields.get("otelServiceName"),
        },
    }


def _run_both(case: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Send one request to the app under each distro and summarise what each exported."""
    with under_both_distros(case) as running:
        answers = {
            name: httpx.get(each.app.url + "/work", headers=_HEADERS, timeout=10).status_code
            for name, each in running.items()
        }
        time.sleep(2.0)  # both batch processors run every 100 ms
        return {name: _summary(each.receiver, each.records, answers[name]) for name, each in running.items()}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_standard_variable_means_what_it_means_under_the_stock_distro(case: str) -> None:
    results = _run_both(CASES[case])
    assert results["otel_rag"] == results["stock"], json.dumps(results, indent=1)
    assert results["stock"]["answered"] == 200


def test_the_comparison_can_tell_the_cases_apart() -> None:
    """The summaries differ where the variables make a difference, so agreement above is not agreement on nothing."""
    defaults = _run_both({})["otel_rag"]
    assert defaults["server spans"] == ["instrumented"] and defaults["work log in the request's trace"]
    assert _run_both(CASES["every instrumentation disabled"])["otel_rag"]["server spans"] == ["fastapi's own"]
    assert defaults["correlation fields"] == {
        "trace id is the request's": False,
        "span id set": False,
        "sampled": None,
        "service": None,
    }
    captured = _run_both(CASES["header capture"])["otel_rag"]["captured headers"]
    assert captured == {
        "http.request.header.x_custom": ["custom value"],
        "http.request.header.authorization": ["[REDACTED]"],
        "http.response.header.x_answer": ["42"],
        "http.response.header.set_cookie": ["[REDACTED]"],
    }
