"""The debug API (otel_rag.web) on a real Postgres: access, validation, answers, errors as JSON, the pages."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

import otel_rag.web
from otel_rag.testing import free_port
from otel_rag.web._access import DebugConfig
from otel_rag.web._pages import STATIC_DIR
from otel_rag.web._server import create_app
from tests.support.postgres import Database
from tests.support.processes import BIN, base_env
from tests.support.seed import LANGSMITH_URL, Seeded

TOKEN = "debug-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def seeded(store: Database) -> Seeded:
    return Seeded(store)


@pytest.fixture
def client(seeded: Seeded) -> TestClient:
    config = DebugConfig(dsn=seeded.reader, token=TOKEN, trace_viewer_url="http://jaeger:16686/trace/{trace_id}")
    return TestClient(create_app(config))


def test_every_endpoint_needs_the_token(client: TestClient, seeded: Seeded) -> None:
    paths = [f"/debug/api/traces/{seeded.trace_id}", "/debug/api/traces", "/debug/api/errors", "/debug/api/logs"]
    for path in paths:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Bearer "}):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "token" in response.json()["error"]
        assert client.get(path, headers=AUTH).status_code == 200, path


def test_one_trace_with_its_waterfall_logs_totals_and_links(client: TestClient, seeded: Seeded) -> None:
    body = client.get(f"/debug/api/traces/{seeded.trace_id.upper()}", headers=AUTH).json()
    assert body["trace_id"] == seeded.trace_id
    assert [(s["name"], s["depth"]) for s in body["spans"]] == [
        ("POST /documents", 0),
        ("rag.parse", 1),
        ("rag.chunk", 1),
        ("rag.embed", 1),
        ("rag.generate", 1),
    ]
    embed = body["spans"][3]
    assert embed["duration_ms"] >= 12 and embed["offset_ms"] > 0 and embed["cost_usd"] == pytest.approx(0.006)
    assert [line["message"] for line in body["spans"][1]["logs"]] == ["parse.done"]
    assert (body["input_tokens"], body["output_tokens"], body["errors"]) == (1300, 200, 2)
    assert body["slowest_stage"] == "embed" and body["user_ids"] == ["bob"]
    assert body["links"] == {
        "trace_viewer": f"http://jaeger:16686/trace/{seeded.trace_id}",
        "langsmith": LANGSMITH_URL,
    }


def test_errors_traces_and_logs(client: TestClient, seeded: Seeded) -> None:
    bob = client.get("/debug/api/errors", params={"user": "bob", "since": "-10m"}, headers=AUTH).json()
    assert {(e["source"], e["name"]) for e in bob} == {("span", "rag.generate"), ("log", "rag")}
    everybody = client.get("/debug/api/errors", headers=AUTH).json()
    assert {e["user_id"] for e in everybody} == {"bob", "carol"}
    slow = client.get("/debug/api/traces", params={"min_duration": "15ms", "since": "-10m"}, headers=AUTH).json()
    assert [t["trace_id"] for t in slow] == [seeded.trace_id]
    failed = client.get("/debug/api/traces", params={"status": "error"}, headers=AUTH).json()
    assert {t["name"] for t in failed} == {"POST /documents", "GET /health"}
    errors_only = client.get("/debug/api/logs", params={"since": "-10m", "level": "error"}, headers=AUTH).json()
    assert [line["message"] for line in errors_only] == ["llm.failed boom 100%"]
    later = client.get("/debug/api/logs", params={"since": "-10m", "until": "-5m"}, headers=AUTH).json()
    assert later == []


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/debug/api/traces/xyz", {}, 400, "32 hexadecimal"),
        ("/debug/api/traces/" + "f" * 32, {}, 404, "not in the store"),
        ("/debug/api/traces", {"min_duration": "fast"}, 400, "min_duration"),
        ("/debug/api/traces", {"status": "broken"}, 400, "accepted: error"),
        ("/debug/api/traces", {"limit": "0"}, 400, "limit"),
        ("/debug/api/errors", {"since": "yesterday-ish"}, 400, "cannot read time"),
        ("/debug/api/errors", {"user": "x" * 500}, 400, "too long"),
        ("/debug/api/logs", {"level": "loud"}, 400, "level"),
        ("/debug/api/logs", {"since": "now", "until": "-1h"}, 400, "empty"),
        ("/debug/api/logs", {"grep": "'; drop table otel_rag.logs; --"}, 200, None),
    ],
)
def test_bad_parameters_are_clear_json_errors(
    client: TestClient, path: str, params: dict[str, str], status: int, message: str | None
) -> None:
    response = client.get(path, params=params, headers=AUTH)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    if message:
        assert message in response.json()["error"]
    assert "SELECT" not in response.text and "psycopg" not in response.text


def test_an_unreachable_store_is_a_503_without_details(seeded: Seeded) -> None:
    dead = f"postgresql://otel_rag_reader:secret-password@127.0.0.1:{free_port()}/otel_rag"
    client = TestClient(create_app(DebugConfig(dsn=dead, token=TOKEN)))
    response = client.get("/debug/api/errors", headers=AUTH)
    assert response.status_code == 503
    assert response.json() == {"error": "the store is unreachable; try again shortly"}
    assert "secret-password" not in response.text and "127.0.0.1" not in response.text


def test_the_router_in_an_app_without_a_token_answers_nobody(seeded: Seeded) -> None:
    """Mounted in an app, "local" proves nothing: behind a proxy the client address comes from X-Forwarded-For."""
    app = create_app(DebugConfig(dsn=seeded.reader))
    for client in (("203.0.113.7", 40000), ("127.0.0.1", 40000)):
        response = TestClient(app, client=client).get("/debug/api/errors", headers={"X-Forwarded-For": "127.0.0.1"})
        assert response.status_code == 403 and "OTEL_RAG_DEBUG_TOKEN" in response.json()["error"]


def test_otel_rag_serve_without_a_token_answers_direct_local_clients_only(seeded: Seeded) -> None:
    app = create_app(DebugConfig(dsn=seeded.reader, loopback_without_token=True))
    remote = TestClient(app, client=("203.0.113.7", 40000)).get("/debug/api/errors")
    assert remote.status_code == 403 and "OTEL_RAG_DEBUG_TOKEN" in remote.json()["error"]
    local = TestClient(app, client=("127.0.0.1", 40000))
    assert local.get("/debug/api/errors").status_code == 200
    proxied = local.get("/debug/api/errors", headers={"X-Forwarded-For": "203.0.113.7"})
    assert proxied.status_code == 403  # a local proxy in front of it relays strangers


def test_the_router_mounts_under_a_prefix_and_serves_the_built_page(seeded: Seeded) -> None:
    app = FastAPI()
    app.state.otel_rag_debug = DebugConfig(dsn=seeded.reader, token=TOKEN)
    app.include_router(otel_rag.web.router, prefix="/ops")
    client = TestClient(app)
    assert client.get("/ops/debug/api/traces", headers=AUTH).status_code == 200
    page = client.get(f"/ops/debug/trace/{seeded.trace_id}")
    assert (STATIC_DIR / "index.html").exists(), "the UI is built by `make test` (npm run build in ui/)"
    assert page.status_code == 200
    assert '<base href="/ops/debug/">' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    script = next(part.split('"')[0] for part in page.text.split('src="./')[1:])
    asset = client.get("/ops/debug/" + script)
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
    assert "immutable" in asset.headers["cache-control"]
    assert client.get("/ops/debug/assets/../index.html").status_code == 404
    assert client.get("/ops/debug/assets/%2e%2e/%2e%2e/web/api.py").status_code == 404
    assert client.get("/ops/debug", follow_redirects=False).headers["location"] == "/ops/debug/"
    compare = client.get("/ops/debug/compare", params={"by": "rag.chunk.size"})
    assert compare.status_code == 200 and '<base href="/ops/debug/">' in compare.text


def test_otel_rag_serve_binds_loopback_without_a_token(seeded: Seeded) -> None:
    port = free_port()
    env = base_env(OTEL_RAG_DEBUG_DSN=seeded.reader)
    process = subprocess.Popen(
        [str(BIN / "otel-rag"), "serve", "--host", "0.0.0.0", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(100):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/debug/api/errors", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response.status_code == 200  # a local client, no token configured
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        local_addresses = [line.split()[3] for line in listening.splitlines()]
        assert local_addresses == [f"127.0.0.1:{port}"], listening
    finally:
        process.terminate()
        stderr = process.communicate(timeout=10)[1]
    assert "OTEL_RAG_DEBUG_TOKEN is not set, so the debug page listens on 127.0.0.1 only" in stderr


@pytest.mark.integration  # a child process
def test_otel_rag_serve_without_a_store_says_which_variable() -> None:
    result = subprocess.run([str(BIN / "otel-rag"), "serve"], env=base_env(), capture_output=True, text=True)
    assert result.returncode == 2
    assert "OTEL_RAG_DEBUG_DSN" in result.stderr


def test_a_store_that_refuses_the_role_says_so(seeded: Seeded) -> None:
    wrong = seeded.store.server.dsn(user="rag_reader", password="not-the-password", dbname=seeded.store.name)
    response = TestClient(create_app(DebugConfig(dsn=wrong, token=TOKEN))).get("/debug/api/errors", headers=AUTH)
    assert response.status_code == 503
    assert "refused the configured role" in response.json()["error"]
    assert "not-the-password" not in response.text


def test_doctor_says_the_store_refused_the_role(seeded: Seeded) -> None:
    wrong = seeded.store.server.dsn(user="rag_reader", password="not-the-password", dbname=seeded.store.name)
    result = subprocess.run(
        [str(BIN / "otel-rag"), "doctor"],
        env=base_env(OTEL_RAG_POSTGRES_DSN=wrong, OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "postgres: FAIL" in result.stdout and "refused the configured role" in result.stdout
    assert "not-the-password" not in result.stdout + result.stderr
