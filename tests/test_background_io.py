"""Nothing on the request path waits on our backends, and our own background I/O never becomes app telemetry.

The reference service runs under the launcher five times at once, side by side: LangSmith disabled (twice: two
processes with the same settings show how far identical ones differ), refusing connections, accepting and never
answering (a black hole), and answering 500 after 5 s. Each round sends one request to each in a shuffled order, so
machine noise and position effects hit them alike; each dead-LangSmith median must be within 5 % of the disabled
ones.
"""

from __future__ import annotations

import random
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from otel_rag.testing import free_port
from tests.support.langsmith_server import LangSmithStub
from tests.support.otlp import OtlpReceiver
from tests.support.postgres import Database, scratch_dir
from tests.support.processes import AppProcess, base_env, launch_uvicorn

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`

WARM_UP_ROUNDS = 20  # first requests pay for imports and caches: not measured
ROUNDS = 150
DOCUMENT = b"# Returns\n\nRefunds are accepted within thirty days of purchase with the original receipt.\n"


@contextmanager
def black_hole() -> Iterator[str]:
    """A server that accepts connections and never says a word; yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for connection in held:
            connection.close()
        listener.close()


@contextmanager
def slow_errors(delay: float = 5.0) -> Iterator[tuple[str, list[str]]]:
    """A server that answers every request with 500 after `delay` seconds; yields its URL and the requests seen."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _fail(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(delay)
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PATCH = _fail

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _rag_app(stack: ExitStack, llm: str, langsmith: str | None) -> AppProcess:
    env = base_env(
        OPENAI_BASE_URL=llm + "/v1",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_SERVICE_NAME="rag-app",
    )
    if langsmith is not None:
        env.update(LANGSMITH_API_KEY="lsv2_pt_0123456789abcdef0123456789", LANGSMITH_ENDPOINT=langsmith)
    app = stack.enter_context(launch_uvicorn(env, app="examples.rag_app.main:app"))
    return app


def test_a_dead_langsmith_never_slows_a_request(llm: str) -> None:
    with ExitStack() as stack:
        hole = stack.enter_context(black_hole())
        slow_url, slow_seen = stack.enter_context(slow_errors())
        apps = {
            "disabled": _rag_app(stack, llm, None),
            "disabled too": _rag_app(stack, llm, None),
            "refusing": _rag_app(stack, llm, f"http://127.0.0.1:{free_port()}"),
            "black hole": _rag_app(stack, llm, hole),
            "500 after 5 s": _rag_app(stack, llm, slow_url),
        }
        for app in apps.values():
            app.wait_ready("/healthz")
            upload = httpx.post(app.url + "/documents", files={"file": ("returns.md", DOCUMENT)}, timeout=30)
            assert upload.status_code == 200, upload.text
        latencies: dict[str, list[float]] = {name: [] for name in apps}
        order = list(apps.items())
        shuffle = random.Random(7).shuffle
        with httpx.Client(timeout=30) as client:
            for round_number in range(WARM_UP_ROUNDS + ROUNDS):
                shuffle(order)
                for name, app in order:
                    started = time.perf_counter()
                    answer = client.post(app.url + "/query", json={"question": "How long do refunds take?"})
                    if round_number >= WARM_UP_ROUNDS:
                        latencies[name].append(time.perf_counter() - started)
                    assert answer.status_code == 200, (name, answer.text)
        assert slow_seen, "the mirror did try the slow LangSmith"
        baseline = max(statistics.median(latencies["disabled"]), statistics.median(latencies["disabled too"]))
        report = {name: round(statistics.median(values) * 1000, 2) for name, values in latencies.items()}
        print(f"median request latency (ms) by LangSmith state: {report}")
        for name, values in latencies.items():
            assert statistics.median(values) <= baseline * 1.05, report
            assert max(values) < 1.0, (name, max(values))


def test_our_own_background_calls_make_no_spans(store: Database, otlp: OtlpReceiver) -> None:
    """With the psycopg, requests, httpx and urllib3 instrumentations installed (the launcher loads them), the
    sink's SQL and the mirror's HTTP calls must not show up as the app's spans."""
    stub = LangSmithStub()
    try:
        env = base_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
            OTEL_TRACES_EXPORTER="otlp,postgres",
            OTEL_LOGS_EXPORTER="postgres",
            OTEL_RAG_POSTGRES_DSN=store.dsn("rag_writer"),
            OTEL_RAG_SPOOL_DIR=str(scratch_dir("spool-")),
            LANGSMITH_API_KEY="lsv2_pt_0123456789abcdef0123456789",
            LANGSMITH_ENDPOINT=stub.url,
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="",  # all of them loaded, as opentelemetry-bootstrap would
        )
        with launch_uvicorn(env) as app:
            app.wait_ready()
            for _ in range(3):
                trace_id = httpx.post(app.url + "/upload", content=b"some words to chunk " * 20).json()["trace_id"]
            otlp.wait_for(lambda r: any(s["trace_id"] == trace_id and s["name"] == "POST /upload" for s in r.spans))
            deadline = time.monotonic() + 20
            while not stub.runs and time.monotonic() < deadline:
                time.sleep(0.1)
            assert stub.runs, "the mirror sent runs (through requests and urllib3)"
            while time.monotonic() < deadline:
                if store.scalar("SELECT count(*) FROM otel_rag.spans WHERE trace_id = %s", trace_id):
                    break
                time.sleep(0.1)
        scopes = {span["scope"] for span in otlp.spans}
        assert scopes <= {"otel_rag.http", "opentelemetry.instrumentation.fastapi", "__main__", "otel_rag"}, scopes
        names = {span["name"] for span in otlp.spans}
        assert not {name for name in names if name.startswith(("COPY", "INSERT", "SELECT", "POST", "GET"))} - {
            "POST /upload",
            "GET /hello",
        }, names
        stored = store.scalar("SELECT count(*) FROM otel_rag.spans WHERE scope ~ 'psycopg|requests|urllib3|httpx'")
        assert stored == 0
    finally:
        stub.close()
