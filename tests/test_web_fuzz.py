"""The debug API fuzzed from its own OpenAPI schema (schemathesis) against a real, seeded store: whatever the
parameters, no answer is a 5xx and every answer matches what the schema documents."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import checks
from starlette.testclient import TestClient

import otel_rag.web
from otel_rag.web._access import DebugConfig
from tests.support.postgres import Database
from tests.support.seed import Seeded

# What the API promises: never a server error, only documented status codes and content types, bodies and headers
# as the schema says. (Not "accepts every string the schema allows": a time like `2026-02-31` is a string, and a
# clear 400.)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
TOKEN = "debug-token-for-fuzzing-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _app(seeded: Seeded | None = None) -> FastAPI:
    """The router mounted in an app of its own, with the OpenAPI schema on (otel-rag serve turns it off)."""
    app = FastAPI(title="otel-rag debug API")
    if seeded is not None:
        app.state.otel_rag_debug = DebugConfig(dsn=seeded.reader, token=TOKEN, trace_viewer_url="http://j/{trace_id}")
    app.include_router(otel_rag.web.router)
    return app


FUZZED = _app()  # its store is set by the fixture below, once the database exists
schema = schemathesis.openapi.from_asgi("/openapi.json", FUZZED)


@pytest.fixture(scope="module")
def fuzz_store(pg_server: Any) -> Seeded:
    seeded = Seeded(Database(pg_server))
    FUZZED.state.otel_rag_debug = DebugConfig(dsn=seeded.reader, token=TOKEN, trace_viewer_url="http://j/{trace_id}")
    return seeded


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gives_a_server_error_and_every_answer_matches_the_schema(case: Any, fuzz_store: Seeded) -> None:
    case.call_and_validate(headers=AUTH, checks=CHECKS)


def test_the_schema_documents_every_endpoint_and_its_errors(fuzz_store: Seeded) -> None:
    document = TestClient(_app(fuzz_store)).get("/openapi.json").json()
    api_paths = {path for path in document["paths"] if path.startswith("/debug/api/")}
    assert api_paths == {
        "/debug/api/traces/{trace_id}",
        "/debug/api/traces",
        "/debug/api/errors",
        "/debug/api/logs",
        "/debug/api/series",
        "/debug/api/quality",
        "/debug/api/health",
        "/debug/api/compare",
        "/debug/api/answers",
    }
    for path in api_paths:
        answers = document["paths"][path]["get"]["responses"]
        assert {"200", "400", "401", "403", "413", "503"} <= set(answers), path


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/debug/api/traces", {"limit": "²"}),  # a digit to str.isdigit, not to int()
        ("/debug/api/traces", {"limit": "٣"}),
        ("/debug/api/errors", {"since": "-99999999999d"}),
        ("/debug/api/errors", {"since": "0001-01-01"}),
        ("/debug/api/logs", {"since": "9999-12-31T23:59:59"}),
        ("/debug/api/logs", {"grep": "a\x00b"}),
        ("/debug/api/errors", {"user": "bob\x00"}),
        ("/debug/api/traces", {"min_duration": "1e999s"}),
        ("/debug/api/traces", {"min_duration": "\uff19ms"}),  # a fullwidth nine
        ("/debug/api/traces/" + "a" * 31 + "%0A", {}),
        ("/debug/api/series", {"bucket": "1s", "since": "-30d"}),  # millions of points
        ("/debug/api/series", {"bucket": "0m"}),
        ("/debug/api/quality", {"bucket": "\u0661h"}),  # an Arabic-Indic one
        ("/debug/api/compare", {}),  # nothing to compare by
        ("/debug/api/compare", {"by": "rag.chunk.size", "before": "-1h"}),  # both ways at once
        ("/debug/api/compare", {"before": "yesterday"}),
        ("/debug/api/answers", {"label": "grounded'; DROP TABLE x"}),
        ("/debug/api/health", {"until": "-99999999999d"}),
    ],
)
def test_hostile_parameters_are_400s(fuzz_store: Seeded, path: str, params: dict[str, str]) -> None:
    response = TestClient(_app(fuzz_store)).get(path, params=params, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["error"]


def test_asset_paths_with_nul_are_404s(fuzz_store: Seeded) -> None:
    response = TestClient(_app(fuzz_store)).get("/debug/assets/x%00.js")
    assert response.status_code == 404
