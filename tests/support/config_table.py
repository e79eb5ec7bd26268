"""The configuration reference table of docs/configuration.md, rendered from the catalogue
(otel_rag/_config/settings.py).

`python -m tests.support.config_table` rewrites the table in the document; tests/test_docs.py checks they agree.
"""

from __future__ import annotations

import re

from otel_rag._config.settings import CATALOGUE
from tests.support.processes import REPO

DOC = REPO / "docs" / "configuration.md"
_TABLE = re.compile(r"^\| Variable \| Default \| Accepted \| What it does \|\n(?:^\|.*\|\n)+", re.M)


def render_table() -> str:
    rows = ["| Variable | Default | Accepted | What it does |", "|---|---|---|---|"]
    for setting in CATALOGUE:
        default = f"`{setting.default}`" if setting.default else "(unset)"
        secret = " Secret: masked in `otel-rag config` and in every message." if setting.secret else ""
        rows.append(f"| `{setting.env}` | {default} | {setting.accepted} | {setting.help}{secret} |")
    return "\n".join(rows) + "\n"


def documented_table() -> str:
    match = _TABLE.search(DOC.read_text())
    assert match, "docs/configuration.md has no configuration table"
    return match.group(0)


if __name__ == "__main__":
    DOC.write_text(_TABLE.sub(lambda _: render_table(), DOC.read_text(), count=1))
