"""The `opentelemetry_distro` entry point `otel_rag`: what `opentelemetry-instrument` does before the app runs.

Kept thin: write our defaults for the standard variables, validate the environment (a bad value stops the
process with a message naming the variable), select our configurator, and install our HTTP instrumentation in
place of the stock ASGI/FastAPI one (which would add a second server span per request).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.instrumentation.environment_variables import OTEL_PYTHON_CONFIGURATOR
from opentelemetry.util._importlib_metadata import EntryPoint

from .config import USER_ID_HEADER, ConfigError, load_settings
from .configurator import apply_sdk_defaults, check_exporters
from .fastapi import instrument_starlette

__all__ = ["REPLACED_INSTRUMENTORS", "OtelRagDistro"]

_logger = logging.getLogger("otel_rag")

# Stock instrumentors whose work our own instrumentation does (HTTP server spans, log correlation).
REPLACED_INSTRUMENTORS = frozenset({"fastapi", "starlette", "asgi", "logging"})


class OtelRagDistro(BaseDistro):  # type: ignore[misc]
    def _configure(self, **kwargs: Any) -> None:
        apply_sdk_defaults()
        os.environ.setdefault(OTEL_PYTHON_CONFIGURATOR, "otel_rag")
        try:
            settings = load_settings()
            if not settings.sdk_disabled:
                check_exporters(settings)
        except ConfigError as error:
            sys.stderr.write(f"otel-rag: configuration error: {error}\n")
            sys.stderr.flush()
            # The launcher swallows exceptions; a misconfigured service must not start half-observed.
            os._exit(2)
        if not settings.sdk_disabled:
            instrument_starlette(str(USER_ID_HEADER.read(os.environ)))

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs: Any) -> None:
        if entry_point.name in REPLACED_INSTRUMENTORS:
            _logger.debug("otel-rag replaces the %s instrumentation; not loading it", entry_point.name)
            return
        super().load_instrumentor(entry_point, **kwargs)
