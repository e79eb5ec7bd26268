"""The layering of ARCHITECTURE.md, checked on the code: a module imports only from its own layer or below."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "otel_rag"

# Lowest first. The settings are read by everyone; the configurator and the launcher hooks wire everything together.
LAYERS = [
    ("settings", ["otel_rag._config.settings", "otel_rag._telemetry.timestamps"]),
    ("telemetry", ["otel_rag._telemetry"]),
    ("http", ["otel_rag._http", "otel_rag._config.startup"]),
    ("rag", ["otel_rag.rag"]),
    ("store", ["otel_rag._store"]),
    ("surfaces", ["otel_rag.web", "otel_rag._cli", "otel_rag.testing", "otel_rag._pytest_plugin"]),
    ("wiring", ["otel_rag._config.configurator", "otel_rag._config.distro", "otel_rag"]),
]
# Deliberate exceptions, each with its reason.
ALLOWED = {
    ("otel_rag._store.embedded", "otel_rag.testing"),  # a development server for the demo and the tests: free_port
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{module} is in no layer of tests/test_architecture.py"
    return rank


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    modules = {_module_name(path) for path in PACKAGE.rglob("*.py")}
    return {name for name in names if name in modules}


def test_every_module_imports_only_from_its_layer_or_below() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        for imported in _imports(path):
            if _layer(imported) > _layer(module) and (module, imported) not in ALLOWED:
                upward.append(
                    f"{module} ({LAYERS[_layer(module)][0]}) imports {imported} ({LAYERS[_layer(imported)][0]})"
                )
    assert not upward, "\n".join(upward)


def test_no_relative_imports_and_no_public_module_left_unlisted() -> None:
    public = {"otel_rag", "otel_rag.rag", "otel_rag.web", "otel_rag.testing"}
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        tree = ast.parse(path.read_text())
        assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree)), module
        private = any(part.startswith("_") for part in module.split("."))
        assert private or module in public, f"{module}: public modules are {sorted(public)}; name it with _"
