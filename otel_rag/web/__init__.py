"""The debug page: a JSON API over the Postgres store and the built React page (ui/), as a FastAPI router.

    app.include_router(otel_rag.web.router)                 # /debug/ in your own app
    app.include_router(otel_rag.web.router, prefix="/ops")  # /ops/debug/
    otel-rag serve                                          # a server of its own (server.py)

Access: a bearer token (OTEL_RAG_DEBUG_TOKEN), or local clients only without one (access.py). The API is api.py,
the pages pages.py.
"""

from __future__ import annotations

from fastapi import APIRouter

from .access import DebugConfig
from .api import api_router
from .pages import pages_router

__all__ = ["DebugConfig", "router"]

router = APIRouter()
router.include_router(api_router)
router.include_router(pages_router)
