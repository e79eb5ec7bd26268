"""The debug page end to end in real headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core).

The reference service runs under the launcher with the Postgres store and the debug router mounted; the browser
steps are in ui/e2e/debug-page.mjs (Playwright's API is JavaScript); screenshots go to test-artifacts/debug-page/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import run_browser_script
from tests.support.postgres import Database, scratch_dir
from tests.support.processes import REPO, AppProcess, base_env, launch_uvicorn

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`

TOKEN = "e2e-debug-token-4f1c2a9b7d"
ARTIFACTS = REPO / "test-artifacts" / "debug-page"
SCRIPT = REPO / "ui" / "e2e" / "debug-page.mjs"
DOCUMENT = b"""# Returns

Refunds are accepted within thirty days of purchase. The original receipt is required for every refund.

## Shipping

Standard shipping takes five business days. Express shipping costs ten dollars and takes two days.
"""


@pytest.fixture
def service(store: Database, llm: str) -> Iterator[AppProcess]:
    env = base_env(
        OPENAI_BASE_URL=llm + "/v1",
        OTEL_SERVICE_NAME="rag-app",
        OTEL_TRACES_EXPORTER="postgres",
        OTEL_LOGS_EXPORTER="postgres",
        OTEL_METRICS_EXPORTER="none",
        OTEL_RAG_POSTGRES_DSN=store.dsn("rag_writer"),
        OTEL_RAG_POSTGRES_FLUSH_INTERVAL="100",
        OTEL_RAG_SPOOL_DIR=str(scratch_dir("spool-")),
        OTEL_RAG_DEBUG_DSN=store.dsn("rag_reader"),
        OTEL_RAG_DEBUG_TOKEN=TOKEN,
        OTEL_PYTHON_EXCLUDED_URLS="/debug/",  # the page's own requests are not the service's traffic
    )
    with launch_uvicorn(env, app="examples.rag_app.main:app") as app:
        app.wait_ready("/healthz")
        yield app


def _run_browser(mode: str, service: AppProcess, tmp_path: Path) -> dict[str, object]:
    document = tmp_path / "returns.md"
    document.write_bytes(DOCUMENT)
    env = {"APP_URL": service.url, "TOKEN": TOKEN, "DOCUMENT": str(document), "ARTIFACTS": str(ARTIFACTS)}
    return run_browser_script(SCRIPT, mode, env, f"service log:\n{service.stdout()[-3000:]}")


def test_upload_page_to_waterfall_in_chromium(service: AppProcess, tmp_path: Path) -> None:
    findings = _run_browser("upload", service, tmp_path)
    names = findings["names"]
    assert isinstance(names, list) and len(names) == 6
    assert {"rag.parse", "rag.chunk", "embeddings text-embedding-3-small"} <= set(names)
    for screenshot in ("upload-page.png", "debug-trace-1280.png", "debug-trace-390.png", "debug-home.png"):
        png = (ARTIFACTS / screenshot).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000, screenshot


def test_a_wrong_token_gets_401_and_the_page_says_so(service: AppProcess, tmp_path: Path) -> None:
    findings = _run_browser("wrong-token", service, tmp_path)
    assert findings["status"] == 401
    assert "The server refused the token (401)" in str(findings["message"])
