"""Who may read the debug API, and with which settings: a bearer token, always, except for `otel-rag serve`
bound to 127.0.0.1 without a token, which answers local clients only.

The router mounted in an application never trusts "local" clients: behind a proxy (uvicorn --forwarded-allow-ips)
the client address comes from X-Forwarded-For, which anyone can write. The settings come from the environment
(OTEL_RAG_DEBUG_TOKEN, OTEL_RAG_DEBUG_DSN or else OTEL_RAG_POSTGRES_DSN, OTEL_RAG_POSTGRES_SCHEMA,
OTEL_RAG_TRACE_VIEWER_URL), read once, unless the app sets `app.state.otel_rag_debug` to a DebugConfig of its own
(otel-rag serve and the tests do).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import lru_cache

from starlette.requests import Request

from otel_rag._config.settings import Settings, load_settings

__all__ = ["AccessDenied", "DebugConfig", "check_access", "config_of"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})


@dataclass(frozen=True)
class DebugConfig:
    dsn: str | None
    schema: str = "otel_rag"
    token: str | None = None
    trace_viewer_url: str | None = None  # contains {trace_id}
    archive_url: str | None = None  # traces that have left Postgres are read from here (docs/retention.md)
    # Only `otel-rag serve` on 127.0.0.1 sets this: without a token, its own socket peers on loopback may read.
    loopback_without_token: bool = False

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> DebugConfig:
        """Raises ConfigError (naming the variable) for a bad value when reading the environment."""
        settings = settings or load_settings()
        return cls(
            dsn=settings.debug_dsn or settings.postgres_dsn,
            schema=settings.postgres_schema,
            token=settings.debug_token,
            trace_viewer_url=settings.trace_viewer_url,
            archive_url=settings.archive_url,
        )


class AccessDenied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@lru_cache(maxsize=1)
def _environment_config() -> DebugConfig:
    return DebugConfig.from_settings()


def config_of(request: Request) -> DebugConfig:
    configured = getattr(request.app.state, "otel_rag_debug", None)
    return configured if isinstance(configured, DebugConfig) else _environment_config()


def check_access(request: Request, config: DebugConfig) -> None:
    """Raise AccessDenied unless the request carries the token (or, for `otel-rag serve` on 127.0.0.1 without a
    token, comes straight from a local client: no proxy headers)."""
    if config.token is None:
        if not config.loopback_without_token:
            raise AccessDenied(403, "the debug API needs OTEL_RAG_DEBUG_TOKEN to be set on the server")
        client = request.client.host if request.client else ""
        proxied = "x-forwarded-for" in request.headers or "forwarded" in request.headers
        if client not in LOOPBACK_HOSTS or proxied:
            raise AccessDenied(403, "without OTEL_RAG_DEBUG_TOKEN the debug API answers only local, direct clients")
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise AccessDenied(401, "sign in: this debug API needs the bearer token (OTEL_RAG_DEBUG_TOKEN)")
    if not hmac.compare_digest(presented.strip().encode(), config.token.encode()):
        raise AccessDenied(401, "the token is not valid for this debug API")
