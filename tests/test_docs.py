"""The docs: the configuration reference documents exactly the catalogue, and the site builds without a warning."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from otel_rag._config.settings import CATALOGUE
from tests.support.config_table import documented_table, render_table
from tests.support.processes import REPO


def test_configuration_reference_lists_every_variable() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", text, flags=re.M))
    assert documented == {setting.env for setting in CATALOGUE}
    # Defaults, accepted values and help as the catalogue has them (python -m tests.support.config_table).
    assert documented_table() == render_table()


@pytest.mark.integration  # runs mkdocs as a process
def test_the_docs_site_builds_with_strict_warnings(tmp_path: Path) -> None:
    """Every page, link, snippet and API reference entry resolves (mkdocs --strict fails on any warning)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in (
        "otel_rag.configure",
        "otel_rag.instrument_app",
        "otel_rag.rag.generate",
        "otel_rag.testing.free_port",
    ):
        assert f'id="{name}"' in api, name
