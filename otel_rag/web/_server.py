"""`otel-rag serve`: the debug page and API as a server of their own.

Without OTEL_RAG_DEBUG_TOKEN it listens on 127.0.0.1 only, whatever --host says, and says so: the API then trusts
local clients and nobody else.
"""

from __future__ import annotations

import dataclasses
import sys

from fastapi import FastAPI
from starlette.responses import RedirectResponse

from otel_rag.web import router
from otel_rag.web._access import LOOPBACK_HOSTS, DebugConfig

__all__ = ["create_app", "serve"]


def create_app(config: DebugConfig | None = None) -> FastAPI:
    """A FastAPI app with the debug router at /debug/ (and / redirecting there)."""
    app = FastAPI(title="otel-rag debug", docs_url=None, redoc_url=None, openapi_url=None)
    if config is not None:
        app.state.otel_rag_debug = config
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/debug/")

    return app


def serve(host: str, port: int, config: DebugConfig) -> None:
    import uvicorn

    if config.token is None and host not in LOOPBACK_HOSTS:
        print(
            f"otel-rag serve: OTEL_RAG_DEBUG_TOKEN is not set, so the debug page listens on 127.0.0.1 only "
            f"(not {host}); set a token to serve other machines",
            file=sys.stderr,
        )
        host = "127.0.0.1"
    elif config.token is None:
        print("otel-rag serve: no OTEL_RAG_DEBUG_TOKEN: local clients only", file=sys.stderr)
    if config.token is None:
        config = dataclasses.replace(config, loopback_without_token=True)
    shown = f"[{host}]" if ":" in host else host
    print(f"otel-rag debug page: http://{shown}:{port}/debug/", file=sys.stderr)
    # No proxy headers: the loopback rule must see the real socket peer, never an X-Forwarded-For.
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", proxy_headers=False)
