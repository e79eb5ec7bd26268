"""The README's demo command works on this machine: embedded Postgres, the launcher, the waterfall at the end."""

from __future__ import annotations

import subprocess

from tests.support.postgres import scratch_dir
from tests.support.processes import BIN, REPO, base_env


def test_demo_runs_end_to_end() -> None:
    env = base_env(OTEL_RAG_DEMO_DIR=str(scratch_dir("demo-")))
    env.pop("OTEL_PYTHON_DISTRO")
    result = subprocess.run(
        [str(BIN / "python"), "-m", "examples.demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "embedded postgres (PostgreSQL) 18" in out
    assert out.count("== HTTP ") == 4 and "== HTTP 500" in out
    waterfall = out.split("== otel-rag trace ", 1)[1]
    for name in ("POST /upload", "parse", "chunk", "index", "chunk.created", "users: demo-user"):
        assert name in waterfall, name
    assert "█" in waterfall
