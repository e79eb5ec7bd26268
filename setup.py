"""The build step pyproject.toml cannot declare: the wheel carries the debug page, built from ui/ when missing.

`otel-rag serve` and `otel_rag.web.router` serve otel_rag/web/static/ (a Vite build of ui/). A wheel or sdist built
without it would install a debug page that answers 503, so a build that cannot produce it fails instead. Editable
installs (the repository's own .venv) skip the check: `make ui` builds the page there.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PAGE = ROOT / "otel_rag" / "web" / "static" / "index.html"
UI = ROOT / "ui"


class BuildWithDebugPage(build_py):
    def run(self) -> None:
        if not getattr(self, "editable_mode", False) and not PAGE.exists():
            _build_page()
        super().run()


def _build_page() -> None:
    npm = shutil.which("npm")
    if not (UI / "package.json").exists() or npm is None:
        missing = "the ui/ sources" if npm else "npm (Node.js)"
        raise SystemExit(f"otel-rag: cannot build the debug page into {PAGE.parent}: {missing} not found")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=UI, check=True)
    subprocess.run([npm, "run", "build"], cwd=UI, check=True)
    if not PAGE.exists():
        raise SystemExit(f"otel-rag: the UI build did not produce {PAGE}")


setup(cmdclass={"build_py": BuildWithDebugPage})
