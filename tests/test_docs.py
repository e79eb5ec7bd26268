"""The configuration reference documents exactly the catalogue."""

from __future__ import annotations

import re

from otel_rag._config.settings import CATALOGUE
from tests.support.config_table import documented_table, render_table
from tests.support.processes import REPO


def test_configuration_reference_lists_every_variable() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", text, flags=re.M))
    assert documented == {setting.env for setting in CATALOGUE}
    # Defaults, accepted values and help as the catalogue has them (python -m tests.support.config_table).
    assert documented_table() == render_table()
