"""No secret leaves the process: every kind in the corpus goes through one running reference service, and none of
it reaches any of the six sinks (stdout, OTLP logs, OTLP spans, Postgres logs, Postgres spans, LangSmith).

The service runs under the launcher with content capture on (prompts and completions recorded, the riskiest
setting), a secret in its resource attributes and an e-mail PII pattern. Each sink must also show the harmless
marker the requests carry, so "nothing leaked" never means "nothing arrived".
"""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest

from tests.support.langsmith_server import LangSmithStub
from tests.support.leaky_app import MARK
from tests.support.otlp import OtlpReceiver
from tests.support.postgres import Database, scratch_dir
from tests.support.processes import base_env, launch_uvicorn
from tests.support.secrets import CORPUS

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`

USER = "leaky.user@example.com"
RESOURCE_SECRET = "RESOURCEpassword0123"
QUERY_SECRETS = {"client_secret": "QSclient0123", "refresh_token": "QSrefresh0123", "X-Amz-Signature": "QSsig0123"}


def _table_text(store: Database, table: str) -> str:
    with psycopg.connect(store.admin_dsn) as connection:
        row = connection.execute(f"SELECT string_agg(t::text, E'\\n') FROM otel_rag.{table} t").fetchone()
    return str(row[0] if row else "")


def test_no_secret_reaches_any_sink(store: Database, otlp: OtlpReceiver, llm: str) -> None:
    stub = LangSmithStub()
    try:
        env = base_env(
            OPENAI_BASE_URL=llm + "/v1",
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
            OTEL_TRACES_EXPORTER="otlp,postgres",
            OTEL_LOGS_EXPORTER="otlp,postgres",
            OTEL_METRICS_EXPORTER="none",
            OTEL_RAG_POSTGRES_DSN=store.dsn("rag_writer"),
            OTEL_RAG_SPOOL_DIR=str(scratch_dir("spool-")),
            OTEL_RAG_REDACT_PATTERNS=r"[\w.+-]+@[\w-]+\.[\w.]+",
            OTEL_RESOURCE_ATTRIBUTES=f"deployment.environment=test,deployment.db=postgresql://svc:{RESOURCE_SECRET}@db/x",
            OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_AND_EVENT",
            LANGSMITH_API_KEY="lsv2_pt_0123456789abcdef0123456789",
            LANGSMITH_ENDPOINT=stub.url,
            OTEL_SERVICE_NAME="leaky",
        )
        with launch_uvicorn(env, app="tests.support.leaky_app:app") as app:
            app.wait_ready("/healthz")
            document = "\n".join(f"{MARK} fact {index}: {secret.text}" for index, secret in enumerate(CORPUS))
            headers = {"X-User-Id": USER}
            upload = httpx.post(
                app.url + "/documents", files={"file": ("facts.md", document.encode())}, headers=headers, timeout=30
            )
            assert upload.status_code == 200, upload.text
            question = f"{MARK} what are the facts? {CORPUS[0].text} {CORPUS[4].text}"
            answer = httpx.post(app.url + "/query", json={"question": question}, headers=headers, timeout=30)
            assert answer.status_code == 200, answer.text
            query_string = "&".join(f"{key}={value}" for key, value in QUERY_SECRETS.items())
            assert httpx.get(f"{app.url}/healthz?{query_string}").status_code == 200
            for secret in CORPUS:
                response = httpx.post(app.url + "/leak", json={"secret": secret.text, "user": USER}, timeout=30)
                assert response.status_code == 200, response.text
            last = response.json()["trace_id"]
            otlp.wait_for(lambda r: any(s["trace_id"] == last and s["name"] == "POST /leak" for s in r.spans), 30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(MARK.encode() in body for body in stub.bodies):
                time.sleep(0.2)
        # The app is stopped: every exporter flushed on SIGTERM.
        otlp_logs = b"".join(body for path, body in otlp.raw if path == "/v1/logs").decode("utf-8", "replace")
        otlp_spans = b"".join(body for path, body in otlp.raw if path == "/v1/traces").decode("utf-8", "replace")
        sinks = {
            "stdout": app.stdout() + app.stderr(),
            "OTLP logs": otlp_logs,
            "OTLP spans": otlp_spans,
            "Postgres logs": _table_text(store, "logs"),
            "Postgres spans": _table_text(store, "spans"),
            "LangSmith": b"".join(stub.bodies).decode("utf-8", "replace"),
        }
        forbidden = {
            **{secret.kind: secret.leak for secret in CORPUS},
            "user id (PII pattern)": USER,
            "resource attribute": RESOURCE_SECRET,
            **{f"query string {key}": value for key, value in QUERY_SECRETS.items()},
        }
        leaks = [(sink, kind) for sink, text in sinks.items() for kind, leak in forbidden.items() if leak in text]
        assert leaks == [], leaks
        for sink, text in sinks.items():
            assert MARK in text, f"{sink} received nothing from /leak: the check above would be vacuous"
            assert "[REDACTED]" in text, sink
    finally:
        stub.close()
