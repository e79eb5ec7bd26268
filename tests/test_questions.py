"""docs/QUESTIONS.md cannot rot: every command in it runs against a store filled by the traffic it describes.

The reference service plays its traffic (examples/rag_app/traffic.py: an A/B test of chunk size, an overload, a
deploy with a cheaper model that strays from its context) into a real PostgreSQL; then each `$ otel-rag ...` line
of the document runs with the run's variables, must exit as the document says, and must show what the document
says it shows (the checks below, one per question). `OTEL_RAG_WRITE_QUESTIONS=1` writes the outputs of this run into
the document instead (with `OTEL_RAG_QUESTIONS_MINUTES=8` for the document's own run).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from otel_rag.testing import free_port
from tests.support.browser import run_browser_script
from tests.support.postgres import Database, scratch_dir
from tests.support.processes import BIN, AppProcess, base_env

MINUTES = float(os.environ.get("OTEL_RAG_QUESTIONS_MINUTES", "1.5"))
pytestmark = [pytest.mark.integration, pytest.mark.timeout(MINUTES * 60 + 420)]  # the traffic, then the commands

DOC = Path(__file__).resolve().parents[1] / "docs" / "QUESTIONS.md"
REPO = DOC.parents[1]
ARTIFACTS = REPO / "test-artifacts" / "questions"
TOKEN = "questions-debug-token-5e2d8a"
_BLOCK = re.compile(r"```console\n\$ (?P<command>[^\n]*)\n(?P<output>.*?)```", re.S)
_EXIT = re.compile(r"\s+#\s*exits (\d)\b.*$")


def documented_commands() -> list[tuple[str, int, str]]:
    """(command, documented exit status, documented output) of each console block, in order."""
    found = []
    for match in _BLOCK.finditer(DOC.read_text()):
        command, status = match["command"], 0
        exit_note = _EXIT.search(command)
        if exit_note:
            command, status = command[: exit_note.start()], int(exit_note[1])
        found.append((command.strip(), status, match["output"]))
    return found


@pytest.fixture(scope="module")
def played(pg_server: Any) -> tuple[Database, dict[str, Any]]:
    store = Database(pg_server)
    summary = scratch_dir("traffic-") / "summary.json"
    argv = [sys.executable, "-m", "examples.rag_app.traffic", "--dsn", store.admin_dsn, "--minutes", str(MINUTES)]
    result = subprocess.run(
        [*argv, "--rate", "8", "--summary", str(summary)],
        cwd=REPO,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=MINUTES * 60 + 240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return store, json.loads(summary.read_text())


def _run(store: Database, summary: dict[str, Any], command: str) -> subprocess.CompletedProcess[str]:
    """The command as a shell would run it with the traffic run's variables set (no shell needed)."""

    def value(variable: re.Match[str]) -> str:
        assert variable[1] in summary, f"{command}: ${variable[1]} is not a variable the traffic run sets"
        return str(summary[variable[1]])

    argv = [re.sub(r"\$(\w+)", value, word) for word in shlex.split(command)]
    assert argv[0] == "otel-rag", f"{command}: the document's commands are otel-rag commands"
    env = base_env(OTEL_RAG_POSTGRES_DSN=store.dsn("rag_reader"), TZ="UTC")
    return subprocess.run([str(BIN / "otel-rag"), *argv[1:]], env=env, capture_output=True, text=True, timeout=120)


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def check_trace(out: str, summary: dict[str, Any]) -> None:
    assert f"trace {summary['SLOW_UPLOAD']}" in out and "POST /documents" in out
    assert "slowest stage: embed" in out and "embeddings text-embedding-3-small" in out  # the long handbook


def check_errors(out: str, summary: dict[str, Any]) -> None:
    assert "415: upload a .txt, .md or .pdf file" in out or "422: no text found in the document" in out
    assert "HTTPException upload.done: " in out  # the stage's own log line says what failed


def check_cost(out: str, summary: dict[str, Any]) -> None:
    assert f"cost of trace {summary['QUESTION']}" in out
    assert re.search(r"generate\s+1\s+\d+\s+\d+\s+\$", out) and "total" in out


def check_logs(out: str, summary: dict[str, Any]) -> None:
    assert "[InternalServerError: Error code: 503]" in out  # the overloaded model, on the stage's own line
    server_lines = [line for line in out.splitlines() if "Exception in ASGI application" in line]
    assert server_lines and all(re.search(r" [0-9a-f]{32} Exception", line) for line in server_lines)  # in a trace


def check_traces(out: str, summary: dict[str, Any]) -> None:
    assert summary["SLOW_UPLOAD"] in out and "POST /documents" in out


def check_quality(out: str, summary: dict[str, Any]) -> None:
    found = re.search(r"quality dropped at (\S+ \S+): hallucination (\S+)% -> (\S+)%", out)
    assert found, out
    at = dt.datetime.fromisoformat(found[1]).replace(tzinfo=dt.UTC)
    bucket = int(summary["BUCKET"].rstrip("sm")) * (60 if summary["BUCKET"].endswith("m") else 1)
    assert abs((at - _when(summary["DEPLOYED_AT"])).total_seconds()) <= 2 * bucket, (at, summary["DEPLOYED_AT"])
    assert float(found[2]) < 5 and float(found[3]) > 12
    assert "model (generate): before gpt-4o-mini" in out and "after gpt-4.1-nano" in out
    assert "service.version: before 1.4.0" in out


def check_compare(out: str, summary: dict[str, Any]) -> None:
    groups = {line.split()[0]: line.split() for line in out.splitlines()[1:3]}
    assert set(groups) == {"60", "120"} and all(int(row[1]) >= 30 for row in groups.values())
    assert re.search(r"rag.chunk.size 120 vs 60: p95 [+-]\d+% \[", out) and "cost +" in out


def check_compare_deploy(out: str, summary: dict[str, Any]) -> None:
    assert re.search(r"after vs before: .*hallucination \+\d+(\.\d+)? pts", out), out


def check_health(out: str, summary: dict[str, Any]) -> None:
    assert "DEGRADED" in out and "hallucinations" in out and "(over 10 %)" in out


CHECKS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "trace": check_trace,
    "errors": check_errors,
    "cost": check_cost,
    "logs": check_logs,
    "traces": check_traces,
    "quality": check_quality,
    "compare --by": check_compare,
    "compare --before": check_compare_deploy,
    "health": check_health,
}


def _check_for(command: str) -> Callable[[str, dict[str, Any]], None] | None:
    words = command.split()
    return CHECKS.get(" ".join(words[1:3])) or CHECKS.get(words[1])


def documented_run() -> dict[str, str]:
    """The variables of the document's own run (its `export NAME=value` lines)."""
    return dict(re.findall(r"^export (\w+)=(\S*)$", DOC.read_text(), re.M))


def test_the_document_asks_each_question_once_and_shows_what_it_claims() -> None:
    commands = documented_commands()
    asked = [_check_for(command) for command, _, _ in commands]
    assert sorted(check.__name__ for check in asked if check) == sorted(check.__name__ for check in CHECKS.values())
    assert None not in asked, "a command in docs/QUESTIONS.md that no check here covers"
    run = documented_run()
    for (command, _, output), check in zip(commands, asked, strict=True):
        assert check is not None and output.strip(), command
        check(output, run)  # the printed output shows what the text says it shows, for the run it came from


def test_every_command_in_the_document_answers_on_the_played_store(played: tuple[Database, dict[str, Any]]) -> None:
    store, summary = played
    text = DOC.read_text()
    for command, status, _ in documented_commands():
        result = _run(store, summary, command)
        assert result.returncode == status, f"{command}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        check = _check_for(command)
        assert check is not None, command
        check(result.stdout, summary)
        if os.environ.get("OTEL_RAG_WRITE_QUESTIONS") == "1":
            block = f"```console\n$ {command}"
            start = text.index(block)
            end = text.index("```", start + len(block))
            note = f"   # exits {status}" if status else ""
            text = text[:start] + f"{block}{_exit_note(text, start, note)}\n{result.stdout}" + text[end:]
    if os.environ.get("OTEL_RAG_WRITE_QUESTIONS") == "1":
        for name, value in summary.items():
            text = re.sub(rf"^export {name}=\S*$", f"export {name}={value}", text, flags=re.M)
        DOC.write_text(text)


def _exit_note(text: str, start: int, fallback: str) -> str:
    """The exit note as the document words it (kept when the outputs are written back)."""
    line = text[start:].split("\n", 2)[1]
    note = _EXIT.search(line)
    return note[0] if note else fallback


@pytest.mark.parametrize("view", ["overview", "compare"])
def test_the_debug_page_answers_them_too_in_chromium(played: tuple[Database, dict[str, Any]], view: str) -> None:
    """The same store on the page: the health strip, the charts drawn (with the drop named), the traces behind a
    point by keyboard and mouse, the compare view; at 1280 and 390 px (screenshots in test-artifacts/questions/)."""
    store, summary = played
    port = free_port()
    env = base_env(OTEL_RAG_DEBUG_DSN=store.dsn("rag_reader"), OTEL_RAG_DEBUG_TOKEN=TOKEN)
    with AppProcess([str(BIN / "otel-rag"), "serve", "--port", str(port)], env, port) as server:
        server.wait_ready("/debug/")
        window = {"SINCE": str(summary["START"]), "UNTIL": str(summary["END"])}
        browser_env = {"APP_URL": server.url, "TOKEN": TOKEN, "ARTIFACTS": str(ARTIFACTS), **window}
        findings = run_browser_script(REPO / "ui" / "e2e" / "questions.mjs", view, browser_env, server.stderr()[-3000:])
    if view == "overview":
        assert str(findings["verdict"]).startswith("Quality dropped at")
        assert int(findings["hallucinated"]) > 0
        shots = ["overview-1280.png", "overview-hallucinated.png", "overview-390.png"]
    else:
        assert str(findings["verdict"]).startswith("rag.chunk.size ")
        assert "hallucination +" in str(findings["versions"])  # 1.5.0 against 1.4.0: the planted drop
        shots = ["compare-1280.png", "compare-390.png"]
    for shot in shots:
        png = (ARTIFACTS / shot).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000, shot
