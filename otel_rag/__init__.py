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
    "ConfigError": "otel_rag._config.settings",
    "configure": "otel_rag._config.configurator",
    "current_trace_id": "otel_rag._telemetry.tracing",
    "get_logger": "otel_rag._telemetry.logs",
    "instrument_app": "otel_rag._http.middleware",
    "groundedness": "otel_rag.rag._quality",
    "langsmith_url": "otel_rag.rag._langsmith",
    "record_quality": "otel_rag.rag._quality",
    "set_user": "otel_rag._telemetry.tracing",
    "trace_span": "otel_rag._telemetry.tracing",
}

if TYPE_CHECKING:
    from otel_rag import rag
    from otel_rag._config.configurator import configure
    from otel_rag._config.settings import ConfigError
    from otel_rag._http.middleware import instrument_app
    from otel_rag._telemetry.logs import get_logger
    from otel_rag._telemetry.tracing import current_trace_id, set_user, trace_span
    from otel_rag.rag._langsmith import langsmith_url
    from otel_rag.rag._quality import groundedness, record_quality


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
