"""Latency of the reference RAG service with otel-rag on vs off, same run: upload of a 20-chunk document, query.

off: `uvicorn examples.rag_app.main:app` (the app's otel_rag calls run against the no-op API: no SDK configured).
on:  `opentelemetry-instrument uvicorn examples.rag_app.main:app`: server spans, six RAG stages, metrics, JSON logs
     bridged nowhere, spans and metrics exported over OTLP/HTTP to a local sink (bench/otlp_sink.py).
Both talk to the same local OpenAI-compatible LLM (examples/rag_app/llm_server.py). Rounds alternate on/off;
requests are sequential from one client; the figure is the median latency per variant. On a 2-core machine the
LLM, the sink and the client share the cores with the service, so run-to-run noise is several percent.
Goal (issue 4): p50 overhead <= 5 %.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench._verdict import Goal, report
from bench.http_overhead import free_port, wait_http

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORDS = re.findall(
    r"\w+",
    """retrieval augmented generation grounds answers in documents refunds shipping warranty returns policy
    customers receipts invoices batteries service desk express standard days dollars purchase claims""",
)


def document(chunks: int = 20) -> bytes:
    """About `chunks` chunks of the service's 60-word windows (step 50)."""
    words = [WORDS[(i * 7) % len(WORDS)] for i in range(chunks * 50 + 10)]
    sentences = [" ".join(words[i : i + 12]).capitalize() + "." for i in range(0, len(words), 12)]
    return " ".join(sentences).encode()


def start(variant: str, llm_url: str, sink_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OPENAI_BASE_URL"] = llm_url + "/v1"
    argv = [str(BIN / "uvicorn"), "examples.rag_app.main:app", "--port", str(port), "--no-access-log"]
    if variant == "on":
        env.update(
            {
                "OTEL_PYTHON_DISTRO": "otel_rag",
                "OTEL_SERVICE_NAME": "rag-bench",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
                "OTEL_RAG_LOG_LEVEL": "warning",
            }
        )
        # BENCH_OTEL_X=... sets OTEL_X for the instrumented variant only (to take parts of the pipeline out).
        env.update({k.removeprefix("BENCH_"): v for k, v in os.environ.items() if k.startswith("BENCH_OTEL_")})
        argv = [str(BIN / "opentelemetry-instrument"), *argv]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server process
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz")
    return process, url


def measure(url: str, uploads: int, queries: int) -> tuple[list[float], list[float]]:
    upload_ms, query_ms = [], []
    body = document()
    with httpx.Client(timeout=30) as client:
        for _ in range(3):  # warm-up: connections, first-call imports
            client.post(url + "/documents", files={"file": ("warm.txt", body)})
            client.post(url + "/query", json={"question": "How long do refunds take?"})
        for index in range(uploads):
            started = time.perf_counter()
            response = client.post(url + "/documents", files={"file": (f"doc{index}.txt", body)})
            upload_ms.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200 and response.json()["chunks"] >= 20, response.text
        for _ in range(queries):
            started = time.perf_counter()
            response = client.post(url + "/query", json={"question": "What does the warranty cover for batteries?"})
            query_ms.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    return upload_ms, query_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    llm_port, sink_port = free_port(), free_port()
    llm = subprocess.Popen([sys.executable, "-m", "examples.rag_app.llm_server", "--port", str(llm_port)], cwd=REPO)
    sink = subprocess.Popen([sys.executable, str(REPO / "bench" / "otlp_sink.py"), str(sink_port)])
    results: dict[str, dict[str, list[float]]] = {v: {"upload": [], "query": []} for v in ("off", "on")}
    try:
        wait_http(f"http://127.0.0.1:{sink_port}/stats")
        for round_number in range(args.rounds):
            order = ("off", "on") if round_number % 2 == 0 else ("on", "off")  # neither always runs second
            for variant in order:
                process, url = start(variant, f"http://127.0.0.1:{llm_port}", f"http://127.0.0.1:{sink_port}")
                try:
                    uploads, queries = measure(url, args.uploads, args.queries)
                finally:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(30)
                results[variant]["upload"] += uploads
                results[variant]["query"] += queries
            print(f"round {round_number + 1} done")
    finally:
        llm.terminate()
        sink.terminate()
    print(f"\n{args.rounds} rounds x ({args.uploads} uploads of a 20-chunk document + {args.queries} queries), p50:")
    goals = []
    for kind in ("upload", "query"):
        off, on = statistics.median(results["off"][kind]), statistics.median(results["on"][kind])
        print(f"  {kind:<7} off {off:7.2f} ms   on {on:7.2f} ms   overhead {(on / off - 1) * 100:+5.1f} %")
        goals.append(Goal(f"rag_overhead {kind} p50 with telemetry vs without", on / off, 1.05, higher_is_better=False))
    report(goals)


if __name__ == "__main__":
    main()
