"""The README's demo command works on this machine: embedded Postgres, the launcher, the waterfall at the end."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.postgres import scratch_dir
from tests.support.processes import BIN, REPO, base_env

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`


def test_demo_runs_end_to_end() -> None:
    env = base_env(OTEL_RAG_DEMO_DIR=str(scratch_dir("demo-")))
    env.pop("OTEL_PYTHON_DISTRO")
    result = subprocess.run(
        [str(BIN / "python"), "-m", "examples.demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "embedded postgres (PostgreSQL) 18" in out
    assert out.count("== HTTP 200") == 3  # upload, question, feedback
    assert "thirty days" in out  # the answer came from the uploaded document
    metrics = out.split("== metrics ", 1)[1].split("== otel-rag cost ", 1)[0]
    samples = {line.split("{")[0].split(" ")[0]: line.rsplit(" ", 1)[1] for line in metrics.splitlines() if "{" in line}
    assert float(samples["rag_documents_total"]) == 1 and float(samples["rag_answers_total"]) == 1
    assert float(samples["rag_cost_total"]) > 0 and "http_server_request_duration_seconds_count" in samples
    cost = out.split("== otel-rag cost ", 1)[1].split("== otel-rag trace ", 1)[0]
    assert "generate" in cost and "gpt-4o-mini" in cost and "total" in cost
    waterfall = out.split("== otel-rag trace ", 1)[1]
    embed = "embeddings text-embedding-3-small"
    for name in ("POST /documents", "rag.upload", "rag.parse", "rag.chunk", embed, "parse.done", "demo-user"):
        assert name in waterfall, name
    assert "█" in waterfall and f"slowest stage: {embed}" not in waterfall.split("\n")[0]
