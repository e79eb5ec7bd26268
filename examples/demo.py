"""The README's demo: run the example service under the standard launcher, call it, show its logs.

Starts `opentelemetry-instrument uvicorn examples.hello_app.app:app` on a free local port, sends a few requests
as user `demo-user`, and prints each response's `X-Trace-Id` with the JSON log lines of that trace.
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

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers={"X-User-Id": "demo-user"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def main() -> int:
    port = _free_port()
    env = dict(os.environ)
    env.setdefault("OTEL_SERVICE_NAME", "hello-demo")
    env.setdefault("OTEL_PYTHON_DISTRO", "otel_rag")
    # No Collector in the demo: keep spans and metrics in-process (the store and Collector come later).
    env.setdefault("OTEL_TRACES_EXPORTER", "none")
    env.setdefault("OTEL_METRICS_EXPORTER", "none")
    with tempfile.TemporaryFile() as stdout:
        argv = [str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"), "examples.hello_app.app:app"]
        server = subprocess.Popen(
            [*argv, "--port", str(port)], cwd=REPO, env=env, stdout=stdout, stderr=subprocess.STDOUT
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    _get(base + "/hello")
                    break
                except OSError:
                    time.sleep(0.1)
            calls = [_get(base + path) for path in ("/hello?name=reader", "/work?text=retrieval+augmented", "/fail")]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(20)
        stdout.seek(0)
        lines = [json.loads(line) for line in stdout.read().decode().splitlines() if line.startswith("{")]
    for status, headers, _body in calls:
        trace_id = headers.get("x-trace-id") or headers.get("X-Trace-Id")
        print(f"\n== HTTP {status}  X-Trace-Id: {trace_id}  traceresponse: {headers.get('traceresponse')}")
        for line in lines:
            if line.get("trace_id") == trace_id:
                if "exception" in line:
                    line["exception"] = line["exception"].splitlines()[-1]
                print(json.dumps(line))
    print(f"\n{len(lines)} JSON log lines in all; every one carries trace_id and span_id (null outside requests).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
