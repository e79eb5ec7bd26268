"""Throughput of a trivial FastAPI endpoint: uninstrumented vs stock `opentelemetry-instrument` vs otel-rag.

Each variant runs `uvicorn bench.trivial_app:app` (one worker, access log on, stdout to /dev/null) and is loaded by
`wrk` from the other core; rounds alternate between the variants and the median requests/s is reported. The
stock and otel-rag variants export spans and metrics over OTLP/HTTP to the same local sink
(bench/otlp_sink.py), so export cost is counted for both. Before measuring, the otel-rag variant is checked to
still produce the server span, the X-Trace-Id header and trace-correlated JSON access logs.

Goals: otel-rag >= 2x stock with the full stable HTTP conventions (issue 11); >= 0.70x uninstrumented, at most
+55 us of server CPU per request (issue 16). Needs `wrk` (Debian package).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench._proc import tree_cpu_seconds
from bench._verdict import Goal, report
from otel_rag.testing import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def variant_env(name: str, sink: str) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    uvicorn = [str(BIN / "uvicorn"), "bench.trivial_app:app"]
    if name == "uninstrumented":
        return uvicorn, env
    env.update(
        {
            "OTEL_SERVICE_NAME": "bench",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
        }
    )
    if name == "stock":
        # Logs are not exported in this comparison: the stock logging instrumentation (a dev dependency, for
        # tests/test_sdk_parity.py) would still add its handler to every access log line, so it is left out.
        env.update(
            {
                "OTEL_PYTHON_DISTRO": "distro",
                "OTEL_PYTHON_CONFIGURATOR": "configurator",
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "logging",
            }
        )
    else:
        env.update({"OTEL_PYTHON_DISTRO": "otel_rag", "OTEL_PYTHON_CONFIGURATOR": "otel_rag"})
    return [str(BIN / "opentelemetry-instrument"), *uvicorn], env


class Server:
    def __init__(self, name: str, sink: str) -> None:
        self.port = free_port()
        argv, env = variant_env(name, sink)
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            [*argv, "--port", str(self.port), "--no-server-header"],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}/ping"
        wait_http(self.url)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


def wrk(url: str, seconds: int, connections: int, pid: int | None = None) -> tuple[float, float]:
    """(requests/s, server CPU microseconds per request)."""
    cpu_before = tree_cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url], capture_output=True, text=True, check=True
    ).stdout
    cpu = (tree_cpu_seconds(pid) - cpu_before) if pid else 0.0
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rate or not total:
        raise RuntimeError(out)
    return float(rate.group(1)), cpu / int(total.group(1)) * 1e6


def check_ours(server: Server, sink: str) -> None:
    """The fast path must still do the job: span exported, headers set, access log correlated."""
    with urllib.request.urlopen(server.url) as response:
        trace_id = response.headers["X-Trace-Id"]
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id or ""), "X-Trace-Id missing"
        assert response.headers["traceresponse"].startswith(f"00-{trace_id}-")
    deadline = time.monotonic() + 15
    while json.loads(urllib.request.urlopen(sink + "/stats").read())["/v1/traces"] == 0:
        assert time.monotonic() < deadline, "no span reached the OTLP sink"
        time.sleep(0.2)
    time.sleep(0.5)
    log = Path(server.log.name).read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "uvicorn.access" and line.get("trace_id") == trace_id]
    assert access, "the access log line of the checked request has no trace_id"


def main(argv: list[str] | None = None) -> list[Goal]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("bench/http_overhead.py needs wrk: apt-get install wrk")
    sink_port = free_port()
    sink_url = f"http://127.0.0.1:{sink_port}"
    sink = subprocess.Popen([sys.executable, str(REPO / "bench" / "otlp_sink.py"), str(sink_port)])
    try:
        wait_http(sink_url + "/stats")
        ours = Server("otel-rag", sink_url)
        try:
            check_ours(ours, sink_url)
        finally:
            ours.stop()
        names = ["uninstrumented", "stock", "otel-rag"]
        results: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for round_number in range(args.rounds):
            for name in names:
                server = Server(name, sink_url)
                try:
                    wrk(server.url, 2, args.connections)  # warm-up
                    rate, cpu_us = wrk(server.url, args.seconds, args.connections, server.process.pid)
                    results[name].append(rate)
                    cpu[name].append(cpu_us)
                finally:
                    server.stop()
            print(f"round {round_number + 1}: " + ", ".join(f"{n} {results[n][-1]:.0f}/s" for n in names))
    finally:
        sink.terminate()
    base = statistics.median(results["uninstrumented"])
    stock = statistics.median(results["stock"])
    ours_rps = statistics.median(results["otel-rag"])
    print(f"\nmedian requests/s over {args.rounds} rounds ({args.seconds}s each, {args.connections} connections):")
    base_cpu = statistics.median(cpu["uninstrumented"])
    for name in names:
        median = statistics.median(results[name])
        cpu_us = statistics.median(cpu[name])
        print(
            f"  {name:<15} {median:8.0f}/s  {median / base:4.2f}x uninstrumented   "
            f"server CPU {cpu_us:6.1f} us/request (+{cpu_us - base_cpu:.1f})"
        )
    ours_cpu = statistics.median(cpu["otel-rag"]) - base_cpu
    return report(
        [
            Goal("http_overhead throughput vs uninstrumented", ours_rps / base, 0.70),
            Goal("http_overhead throughput vs stock", ours_rps / stock, 2.0),
            Goal("http_overhead server CPU added per request", ours_cpu, 55, higher_is_better=False, unit=" us"),
        ]
    )


if __name__ == "__main__":
    main()
