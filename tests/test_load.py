"""The production proof, short: 100 concurrent uploads to the reference service (two workers, the Postgres sink,
OTLP through our Collector to Jaeger and Prometheus, the LangSmith mirror), PostgreSQL stopped for 10 s and
restarted in the middle, and a count of what arrived (bench/load.py: every upload's six spans and stage log lines in
Postgres, the same spans in Jaeger, the runs in LangSmith, Prometheus's request count, no duplicates)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.postgres import scratch_dir
from tests.support.processes import REPO, base_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_a_hundred_concurrent_uploads_through_a_postgres_restart_lose_nothing() -> None:
    report = scratch_dir("load-report-")
    argv = [sys.executable, "-m", "bench.load", "--requests", "100", "--concurrency", "100", "--uploads-only"]
    argv += ["--faults", "postgres", "--no-baseline", "--seconds", "15", "--report", str(report)]
    result = subprocess.run(argv, cwd=REPO, env=base_env(), capture_output=True, text=True, timeout=560)
    text = (report / "report.md").read_text() if (report / "report.md").exists() else ""
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "verdict load: nothing lost, nothing twice" in result.stdout
    assert re.search(r"- Postgres stopped: \d+\.\d to \d+\.\d", text), text  # the outage happened during the run
    assert "- 100 requests sent; Prometheus counted 100" in text
    for sink in ("postgres", "jaeger", "langsmith"):
        assert f"- {sink}: nothing missing" in text
    assert "- duplicate postgres spans: 0" in text and "- duplicate postgres logs: 0" in text
    assert re.search(r"\| telemetry on, faults \| [1-9]\d* \| [1-9]\d* \|", text), text  # worker memory sampled
    assert re.search(r"before the outage peaked at [1-9]\d* MiB, during its \d+ s at [1-9]\d* MiB", text), text
    assert (report / "telemetry-on-faults.png").read_bytes().startswith(b"\x89PNG")
