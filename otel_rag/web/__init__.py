"""The debug page: a JSON API over the Postgres store and the built React page (ui/), as a FastAPI router.

    app.include_router(otel_rag.web.router)                 # /debug/ in your own app
    app.include_router(otel_rag.web.router, prefix="/ops")  # /ops/debug/
    otel-rag serve                                          # a server of its own (_server.py)

Access: a bearer token (OTEL_RAG_DEBUG_TOKEN), or local clients only without one (_access.py). The API is _api.py
(the pictures' answers _charts.py), the pages _pages.py. `upload_page()` is the small upload form the reference
service serves.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from otel_rag.web._access import DebugConfig
from otel_rag.web._api import api_router
from otel_rag.web._charts import charts_router
from otel_rag.web._pages import html_page, pages_router

__all__ = ["DebugConfig", "router", "upload_page"]

router = APIRouter()
router.include_router(api_router)
router.include_router(charts_router)
router.include_router(pages_router)


def upload_page(debug_base: str = "/debug/") -> Response:
    """The small upload page (ui/upload.html): upload a file, see its trace id, follow it to the debug page.

    Args:
        debug_base: where the router is mounted (ends with a slash), for the page's links.
    """
    return html_page("upload.html", debug_base)
