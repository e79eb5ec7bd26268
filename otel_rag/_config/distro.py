"""The `opentelemetry_distro` entry point `otel_rag`: what `opentelemetry-instrument` does before the app runs.

Kept thin and import-light (it loads before the environment is validated): install safe logging, write our
defaults for the standard variables, validate the environment, select our configurator, and install our HTTP
instrumentation in place of the stock ASGI/FastAPI one (which would add a second server span per request). Any
failure stops the process with one line naming the variable (exit status 2); see _startup.py.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

from otel_rag._config.startup import exit_on_failure

__all__ = ["REPLACED_INSTRUMENTORS", "OtelRagDistro"]

_logger = logging.getLogger("otel_rag")

# Stock instrumentors whose work our own instrumentation does (HTTP server spans, log correlation).
REPLACED_INSTRUMENTORS = frozenset({"fastapi", "starlette", "asgi", "logging"})


class OtelRagDistro(BaseDistro):  # type: ignore[misc]
    def _configure(self, **kwargs: Any) -> None:
        with exit_on_failure():
            from otel_rag._config.configurator import prepare_launcher

            prepare_launcher()

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs: Any) -> None:
        if entry_point.name in REPLACED_INSTRUMENTORS:
            _logger.debug("otel-rag replaces the %s instrumentation; not loading it", entry_point.name)
            return
        super().load_instrumentor(entry_point, **kwargs)
