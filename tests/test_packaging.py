"""What `pip install otel-rag` gives a user: the wheel and sdist as built from this repository, installed into a
clean virtualenv outside it, run a tiny app under `opentelemetry-instrument` and serve the debug page."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from otel_rag.testing import free_port
from tests.support.processes import REPO

pytestmark = pytest.mark.integration  # builds, creates a virtualenv, starts processes

TINY_APP = """
import otel_rag

log = otel_rag.get_logger("tiny")
with otel_rag.trace_span("tiny.work", items=3):
    log.info("tiny.done", api_key="sk-live-never-printed")
print("tiny app ran")
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_the_wheel_carries_the_page_the_license_and_declares_every_import(built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read("otel_rag-0.1.0.dist-info/METADATA").decode()
        entry_points = wheel.read("otel_rag-0.1.0.dist-info/entry_points.txt").decode()
    assert "otel_rag/web/static/index.html" in names
    assert any(re.fullmatch(r"otel_rag/web/static/assets/index-[\w-]+\.js", name) for name in names)
    assert "otel_rag-0.1.0.dist-info/licenses/LICENSE" in names
    assert {"otel_rag/_store/migrations/0001_tables.sql", "otel_rag/py.typed"} <= names
    assert "License-Expression: Apache-2.0" in metadata
    required = set(re.findall(r"^Requires-Dist: ([\w.-]+)[^;\n]*$", metadata, flags=re.M))
    assert {"prometheus-client", "opentelemetry-util-http", "opentelemetry-semantic-conventions"} <= required
    for package in ("opentelemetry-sdk", "opentelemetry-instrumentation"):  # bounded to what the suite runs
        assert re.search(rf"^Requires-Dist: {package}<[\d.]+,>=", metadata, flags=re.M), package
    assert "otel_rag = otel_rag._pytest_plugin" in entry_points


def test_the_sdist_can_rebuild_the_page(built: dict[str, Path]) -> None:
    with tarfile.open(built["sdist"]) as sdist:
        names = set(sdist.getnames())
    root = "otel_rag-0.1.0"
    assert {f"{root}/ui/package.json", f"{root}/ui/package-lock.json", f"{root}/ui/src/App.tsx"} <= names
    assert f"{root}/setup.py" in names and f"{root}/otel_rag/web/static/index.html" in names
    assert not any("/node_modules/" in name for name in names)


def test_installed_in_a_clean_virtualenv_it_instruments_an_app_and_serves_the_page(
    built: dict[str, Path], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"{built['wheel']}[web]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr
    app = tmp_path / "tiny_app.py"
    app.write_text(TINY_APP)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "OTEL_SERVICE_NAME": "tiny",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    run = subprocess.run(
        [str(venv / "bin" / "opentelemetry-instrument"), str(venv / "bin" / "python"), str(app)],
        cwd=tmp_path,  # outside the repository: only the installed package can be imported
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "tiny app ran" in run.stdout and '"event":"tiny.done"' in run.stdout
    assert '"name": "tiny.work"' in run.stdout  # the console span exporter: our configurator built the SDK
    assert "sk-live-never-printed" not in run.stdout + run.stderr

    port = free_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "otel-rag"), "serve", "--port", str(port), "--dsn", "postgresql://u@127.0.0.1:9/db"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        page = _get_when_up(f"http://127.0.0.1:{port}/debug/")
        assert page.status_code == 200, page.text
        script = re.search(r'src="\.?/?(assets/index-[\w-]+\.js)"', page.text)
        assert script, page.text
        asset = httpx.get(f"http://127.0.0.1:{port}/debug/{script.group(1)}", timeout=5)
        assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
    finally:
        server.terminate()
        server.wait(10)


def _get_when_up(url: str) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, timeout=5, follow_redirects=True)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
