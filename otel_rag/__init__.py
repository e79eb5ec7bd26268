"""otel-rag: OpenTelemetry-native observability for Python RAG services.

The public API, re-exported; importing this package is cheap (modules load on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "configure",
    "current_trace_id",
    "get_logger",
    "groundedness",
    "instrument_app",
    "langsmith_url",
    "rag",
    "record_quality",
    "set_user",
    "trace_span",
]

_EXPORTS = {
    "ConfigError": "otel_rag.config",
    "configure": "otel_rag.configurator",
    "current_trace_id": "otel_rag.tracing",
    "get_logger": "otel_rag.logs",
    "instrument_app": "otel_rag.fastapi",
    "groundedness": "otel_rag.quality",
    "langsmith_url": "otel_rag.langsmith",
    "record_quality": "otel_rag.quality",
    "set_user": "otel_rag.tracing",
    "trace_span": "otel_rag.tracing",
}

if TYPE_CHECKING:
    from . import rag
    from .config import ConfigError
    from .configurator import configure
    from .fastapi import instrument_app
    from .langsmith import langsmith_url
    from .logs import get_logger
    from .quality import groundedness, record_quality
    from .tracing import current_trace_id, set_user, trace_span


def __getattr__(name: str) -> Any:
    if name == "rag":
        import importlib

        module = importlib.import_module("otel_rag.rag")
        globals()["rag"] = module
        return module
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'otel_rag' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
