"""Start the example app as a real process (the launcher, uvicorn, gunicorn) and read its JSON stdout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from otel_rag.testing import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def base_env(**overrides: str) -> dict[str, str]:
    """A clean environment: nothing from the developer's shell leaks OTEL_* settings into a test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LANGSMITH_", "FASTAPI_OTEL"))}
    env.update(
        {
            "OTEL_PYTHON_DISTRO": "otel_rag",  # the stock distro is installed too (benchmarks)
            # The client instrumentations the dev extras install (for tests/test_background_io.py, which turns them
            # back on) would add the apps' outgoing calls as spans; the other tests count exact span sets.
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "httpx,httpx2,requests,urllib3,psycopg",
            "OTEL_SERVICE_NAME": "hello-test",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def launch_script(code: str = "print('app ran')", **env: str) -> subprocess.CompletedProcess[str]:
    """`opentelemetry-instrument python -c CODE` (by default `print('app ran')`) with this environment: does the app
    get to run, and what does the launcher say?"""
    return subprocess.run(
        [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "-c", code],
        env=base_env(**env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


class AppProcess:
    """A server subprocess whose stdout is captured to a file, stopped with SIGTERM."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._stdout = tempfile.NamedTemporaryFile(prefix="app-stdout-", suffix=".log", delete=False)  # noqa: SIM115
        self._stderr = tempfile.NamedTemporaryFile(prefix="app-stderr-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=self._stdout, stderr=self._stderr, start_new_session=True
        )

    def wait_ready(self, path: str = "/hello", timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"app exited with {self.process.returncode}:\n{self.stderr()}\n{self.stdout()}")
            try:
                httpx.get(self.url + path, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"app not ready after {timeout}s:\n{self.stderr()}")

    def stdout(self) -> str:
        return Path(self._stdout.name).read_text(errors="replace")

    def stderr(self) -> str:
        return Path(self._stderr.name).read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        """Every stdout line, parsed; a line that is not one JSON object fails the test."""
        lines = []
        for line in self.stdout().splitlines():
            if not line.strip():
                continue
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError as error:
                raise AssertionError(f"stdout line is not JSON: {line!r}") from error
            assert isinstance(parsed, dict), line
            lines.append(parsed)
        return lines

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> AppProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def launch_uvicorn(env: dict[str, str], *extra: str, app: str = "examples.hello_app.app:app") -> AppProcess:
    port = free_port()
    argv = [str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"), app, "--port", str(port), *extra]
    return AppProcess(argv, env, port)


def launch_gunicorn(env: dict[str, str], workers: int = 2, app: str = "examples.hello_app.app:app") -> AppProcess:
    port = free_port()
    argv = [
        str(BIN / "opentelemetry-instrument"),
        str(BIN / "gunicorn"),
        app,
        "-k",
        "uvicorn.workers.UvicornWorker",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
    ]
    return AppProcess(argv, env, port)
