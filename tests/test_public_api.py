"""The public face: what `otel_rag` exports."""

from __future__ import annotations

import ast
from pathlib import Path

import otel_rag


def test_the_three_lists_of_the_public_api_agree() -> None:
    """`__all__`, the lazy-import map and the TYPE_CHECKING imports (what type checkers see) name the same things."""
    tree = ast.parse(Path(otel_rag.__file__).read_text())
    guarded = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    typed = {
        alias.asname or alias.name: node.module or "otel_rag"
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert set(otel_rag.__all__) == set(typed)
    assert {name: module for name, module in typed.items() if name != "rag"} == otel_rag._EXPORTS
    for name in otel_rag.__all__:
        assert getattr(otel_rag, name) is not None


def test_one_version_everywhere() -> None:
    """The package metadata, `otel_rag.__version__` and the version on the resource and the scopes agree."""
    from importlib.metadata import version

    from otel_rag._telemetry.identity import VERSION

    assert otel_rag.__version__ == VERSION == version("otel-rag")
