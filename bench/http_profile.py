"""Where the time of an instrumented request goes, measured in-process (no network, no server).

Drives `bench.trivial_app:app` through its ASGI interface in a loop and prints the CPU cost per request of the bare
app, of the app under our middleware and under the stock OpenTelemetry ASGI middleware (no export in either),
then the parts: the SDK's span start/end, the duration histogram, context extraction, one JSON log line, and the
OTLP encoding of one span with the stock encoder and with ours. Each figure is the median of several runs.
Companion of bench/http_overhead.py, which measures whole-server throughput.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RUNS = 5
REQUESTS = 5000


def _median_us(func: Callable[[], Any], number: int) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for _ in range(number):
            func()
        samples.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(samples)


def _asgi_cost(app: Any) -> float:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/ping",
        "raw_path": b"/ping",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def loop(n: int) -> None:
        for _ in range(n):
            await app(dict(scope), receive, send)

    asyncio.run(loop(500))
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        asyncio.run(loop(REQUESTS))
        samples.append((time.perf_counter() - start) / REQUESTS * 1e6)
    return statistics.median(samples)


def _child(mode: str) -> None:
    """Runs in a fresh interpreter per mode: SDK globals can be set once per process."""
    os.environ.update(
        {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_SERVICE_NAME": "b",
        }
    )
    sys.path.insert(0, str(REPO))
    if mode == "ours":
        import otel_rag
        from otel_rag._http.middleware import instrument_starlette

        otel_rag.configure()
        instrument_starlette()
    elif mode == "stock":
        from opentelemetry import metrics, trace
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())
        metrics.set_meter_provider(MeterProvider())
        FastAPIInstrumentor().instrument()
    from bench.trivial_app import app

    print(f"{_asgi_cost(app):.1f}")


def _parts() -> dict[str, float]:
    os.environ.update({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"})
    import orjson  # noqa: F401
    from opentelemetry import propagate, trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as stock_encode
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    import otel_rag
    from otel_rag._http.middleware import _getter
    from otel_rag._telemetry import metrics
    from otel_rag._telemetry.otlp import encode_spans

    otel_rag.configure()
    tracer = trace.get_tracer("bench")
    attributes = {"http.request.method": "GET", "url.path": "/ping", "url.scheme": "http", "client.address": "::1"}

    def span() -> None:
        s = tracer.start_span("GET", kind=SpanKind.SERVER, attributes=attributes)
        s.update_name("GET /ping")
        s.set_attributes({"http.route": "/ping", "http.response.status_code": 200})
        s.end()

    metric_attributes = {"http.request.method": "GET", "http.response.status_code": 200, "http.route": "/ping"}
    headers = [(b"host", b"x"), (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
    log = otel_rag.get_logger("bench")
    real_stdout, sys.stdout = sys.stdout, io.TextIOWrapper(open(os.devnull, "wb"))  # noqa: SIM115
    try:
        results = {
            "SDK span start+end (server span, 6 attributes)": _median_us(span, 5000),
            "duration histogram record": _median_us(
                lambda: metrics.http_server_request_duration.record(0.01, metric_attributes), 5000
            ),
            "traceparent extraction": _median_us(lambda: propagate.extract(headers, getter=_getter), 5000),
            "one JSON log line (structlog, 3 fields)": _median_us(
                lambda: log.info("request.done", route="/ping", status=200, ms=1.2), 5000
            ),
        }
    finally:
        sys.stdout = real_stdout
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for _ in range(512):
        s = provider.get_tracer("x").start_span("GET /ping", kind=SpanKind.SERVER, attributes=attributes)
        s.set_attributes({"http.route": "/ping", "http.response.status_code": 200})
        s.end()
    spans = memory.get_finished_spans()
    results["OTLP encode per span, stock encoder"] = _median_us(
        lambda: stock_encode(spans).SerializePartialToString(), 5
    ) / len(spans)
    results["OTLP encode per span, otel-rag encoder"] = _median_us(lambda: encode_spans(spans), 5) / len(spans)
    return results


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
        return
    costs = {}
    for mode in ("bare", "ours", "stock"):
        out = subprocess.run([sys.executable, __file__, "--child", mode], capture_output=True, text=True, check=True)
        costs[mode] = float(out.stdout.strip().splitlines()[-1])
    print(f"per request, in-process, median of {RUNS} runs of {REQUESTS} requests:")
    print(f"  bare FastAPI app                 {costs['bare']:6.1f} us")
    print(f"  + otel-rag middleware            {costs['ours']:6.1f} us  (+{costs['ours'] - costs['bare']:.1f})")
    print(f"  + stock FastAPI instrumentation  {costs['stock']:6.1f} us  (+{costs['stock'] - costs['bare']:.1f})")
    print("parts:")
    for name, value in _parts().items():
        print(f"  {name:<48} {value:6.1f} us")


if __name__ == "__main__":
    main()
