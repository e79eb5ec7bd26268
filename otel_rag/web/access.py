"""Who may read the debug API, and with which settings: a bearer token, or loopback clients only without one.

The settings come from the environment (OTEL_RAG_DEBUG_TOKEN, OTEL_RAG_DEBUG_DSN or else OTEL_RAG_POSTGRES_DSN,
OTEL_RAG_POSTGRES_SCHEMA, OTEL_RAG_TRACE_VIEWER_URL), read once, unless the app sets `app.state.otel_rag_debug`
to a DebugConfig of its own (otel-rag serve and the tests do).
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from functools import lru_cache

from starlette.requests import Request

from ..config import DEBUG_DSN, DEBUG_TOKEN, POSTGRES_DSN, POSTGRES_SCHEMA, TRACE_VIEWER_URL

__all__ = ["AccessDenied", "DebugConfig", "check_access", "config_of"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1"})


@dataclass(frozen=True)
class DebugConfig:
    dsn: str | None
    schema: str = "otel_rag"
    token: str | None = None
    trace_viewer_url: str | None = None  # contains {trace_id}

    @classmethod
    def from_environment(cls) -> DebugConfig:
        """Raises ConfigError (naming the variable) for a bad value."""
        return cls(
            dsn=DEBUG_DSN.read(os.environ) or POSTGRES_DSN.read(os.environ),
            schema=POSTGRES_SCHEMA.read(os.environ) or "otel_rag",
            token=DEBUG_TOKEN.read(os.environ),
            trace_viewer_url=TRACE_VIEWER_URL.read(os.environ),
        )


class AccessDenied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@lru_cache(maxsize=1)
def _environment_config() -> DebugConfig:
    return DebugConfig.from_environment()


def config_of(request: Request) -> DebugConfig:
    configured = getattr(request.app.state, "otel_rag_debug", None)
    return configured if isinstance(configured, DebugConfig) else _environment_config()


def check_access(request: Request, config: DebugConfig) -> None:
    """Raise AccessDenied unless the request carries the token (or, with no token configured, comes from loopback)."""
    if config.token is None:
        client = request.client.host if request.client else ""
        if client not in LOOPBACK_HOSTS:
            raise AccessDenied(403, "the debug API answers only local clients when OTEL_RAG_DEBUG_TOKEN is not set")
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise AccessDenied(401, "sign in: this debug API needs the bearer token (OTEL_RAG_DEBUG_TOKEN)")
    if not hmac.compare_digest(presented.strip().encode(), config.token.encode()):
        raise AccessDenied(401, "the token is not valid for this debug API")
