"""The built debug page (ui/, built by Vite into otel_rag/web/static/) served under <prefix>/debug/.

The same index.html answers /debug/ and /debug/trace/{id} (the page routes itself); a <base> element pointing at
this router's /debug/ lets the page find its assets and the API wherever the router is mounted. The pages hold no
data (the API checks the token), and a strict Content-Security-Policy keeps them from reaching any other origin.
"""

from __future__ import annotations

import html
import mimetypes
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

__all__ = ["STATIC_DIR", "pages_router", "static_file"]

STATIC_DIR = Path(__file__).parent / "static"
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # a shared link's ?token= never reaches another site
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
_NOT_BUILT = (
    "<!doctype html><title>otel-rag debug page not built</title><p>The debug page has not been built. Run "
    "<code>npm ci &amp;&amp; npm run build</code> in <code>ui/</code> (<code>make test</code> does it). "
    "The JSON API under <code>debug/api/</code> works without it.</p>"
)

pages_router = APIRouter()


@lru_cache(maxsize=4)
def _page_template(name: str) -> str | None:
    path = STATIC_DIR / name
    return path.read_text() if path.is_file() else None


def html_page(name: str, base: str) -> Response:
    """A built HTML page with <base href> set to `base` (ends with a slash)."""
    template = _page_template(name)
    if template is None:
        return HTMLResponse(_NOT_BUILT, status_code=503, headers=_SECURITY_HEADERS)
    page = template.replace("<head>", f'<head><base href="{html.escape(base, quote=True)}">', 1)
    return HTMLResponse(page, headers=_SECURITY_HEADERS)


def static_file(relative: str) -> Response:
    """A file under static/assets/, never outside it; hashed names are cached for good."""
    assets = (STATIC_DIR / "assets").resolve()
    if "\x00" in relative or len(relative) > 512:
        return Response("not found", status_code=404, media_type="text/plain")
    path = (assets / relative).resolve()
    if not path.is_relative_to(assets) or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {**_SECURITY_HEADERS, "Cache-Control": "public, max-age=31536000, immutable"}
    return FileResponse(path, media_type=media_type, headers=headers)


def _debug_base(request: Request) -> str:
    """This router's /debug/ URL path, from the request's own path (the router may be mounted under a prefix)."""
    path = request.url.path
    if "/trace/" in path:
        return path[: path.rindex("/trace/")] + "/"
    if path.endswith("/compare"):
        return path[: -len("compare")]
    return path if path.endswith("/") else path + "/"


@pages_router.get("/debug", include_in_schema=False)
def debug_root(request: Request) -> Response:
    return RedirectResponse(_debug_base(request), status_code=308)


@pages_router.get("/debug/", include_in_schema=False)
def debug_home(request: Request) -> Response:
    return html_page("index.html", _debug_base(request))


@pages_router.get("/debug/trace/{trace_id}", include_in_schema=False)
def debug_trace_page(request: Request, trace_id: str) -> Response:
    return html_page("index.html", _debug_base(request))


@pages_router.get("/debug/compare", include_in_schema=False)
def debug_compare_page(request: Request) -> Response:
    return html_page("index.html", _debug_base(request))


@pages_router.get("/debug/assets/{relative:path}", include_in_schema=False)
def debug_asset(relative: str) -> Response:
    return static_file(relative)
