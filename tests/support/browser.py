"""Real headless Chromium for the page tests: Debian's /usr/bin/chromium driven by playwright-core from ui/."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.support.processes import REPO, base_env

__all__ = ["require_browser_tools", "run_browser_script"]


def require_browser_tools() -> str:
    """The node binary; fails (never skips) when node, Chromium or playwright-core is missing."""
    node = shutil.which("node")
    missing = [
        what
        for what, present in (
            ("node (Node.js)", node is not None),
            ("/usr/bin/chromium (apt-get install chromium)", Path("/usr/bin/chromium").exists()),
            ("ui/node_modules/playwright-core (npm ci in ui/)", (REPO / "ui/node_modules/playwright-core").exists()),
        )
        if not present
    ]
    assert not missing, f"the browser test needs {', '.join(missing)}: run `make test`"
    assert node is not None
    return node


def run_browser_script(script: Path, mode: str, env: dict[str, str], context: str = "") -> dict[str, Any]:
    """Run one mode of a ui/e2e script; its last stdout line is a JSON object of findings."""
    node = require_browser_tools()
    result = subprocess.run(
        [node, str(script), mode],
        cwd=REPO / "ui",
        env={**base_env(), **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{context}"
    findings = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(findings, dict)
    return findings
