"""The same service, configured in code instead of by the launcher: `uvicorn examples.hello_app.configured:app`."""

from __future__ import annotations

import otel_rag

otel_rag.configure()
otel_rag.configure()  # a second call is a no-op with a warning

from examples.hello_app.app import app  # noqa: E402 - configure before the app creates its loggers

otel_rag.instrument_app(app)

__all__ = ["app"]
