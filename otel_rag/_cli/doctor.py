"""`otel-rag doctor`: is each configured backend reachable, and if not, what exactly is wrong.

Each check returns a `CheckResult` (ok / fail / skip with a one-line reason a person can act on). Checks use short
timeouts and never raise, so the doctor always finishes and reports every backend.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from otel_rag._config.settings import Settings

__all__ = ["CheckResult", "run_checks"]

Status = Literal["ok", "fail", "skip"]
_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str


def _reachable(host: str, port: int) -> str | None:
    """None when a TCP connection opens, else why not."""
    try:
        with socket.create_connection((host, port), timeout=_TIMEOUT_S):
            return None
    except OSError as error:
        return f"cannot connect to {host}:{port}: {error.strerror or error}"


def _http(url: str, *, post: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int | None, str]:
    """(status, reason) of one request; status None when nothing answered."""
    request = urllib.request.Request(url, data=post, method="POST" if post is not None else "GET")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            return response.status, str(response.reason)
    except urllib.error.HTTPError as error:
        return error.code, str(error.reason)
    except (urllib.error.URLError, OSError) as error:
        return None, str(getattr(error, "reason", error))


def check_otlp(settings: Settings) -> CheckResult:
    exporters = set(settings.traces_exporter) | set(settings.metrics_exporter) | set(settings.logs_exporter)
    if not any(name.startswith("otlp") for name in exporters):
        return CheckResult("otlp", "skip", "no OTLP exporter selected (OTEL_*_EXPORTER)")
    if settings.otlp_protocol == "grpc":
        explicit = settings.raw.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        parts = urlsplit(settings.otlp_endpoint if explicit else "http://localhost:4317")
        problem = _reachable(parts.hostname or "localhost", parts.port or 4317)
        if problem:
            return CheckResult("otlp", "fail", f"gRPC collector at {parts.netloc}: {problem}")
        return CheckResult("otlp", "ok", f"gRPC collector at {parts.netloc} accepts connections")
    url = f"{settings.otlp_endpoint}/v1/traces"
    # An empty ExportTraceServiceRequest is a valid protobuf message: a collector answers 200.
    status, reason = _http(url, post=b"", headers={"Content-Type": "application/x-protobuf"})
    if status is None:
        return CheckResult("otlp", "fail", f"{url} is unreachable ({reason}); is the Collector running?")
    if status >= 300:
        return CheckResult("otlp", "fail", f"{url} answered {status} {reason}: is this an OTLP receiver?")
    return CheckResult("otlp", "ok", f"{url} answered {status}")


def check_postgres(settings: Settings) -> CheckResult:
    if not settings.postgres_dsn:
        return CheckResult("postgres", "skip", "OTEL_RAG_POSTGRES_DSN is not set")
    import psycopg

    try:
        with psycopg.connect(settings.postgres_dsn, connect_timeout=int(_TIMEOUT_S)) as connection:
            row = connection.execute("select current_setting('server_version'), current_user").fetchone()
    except psycopg.Error as error:
        from otel_rag._store import problems

        if problems.refused_credentials(error):
            why = f"the store refused the configured role ({problems.describe(error)})"
            return CheckResult("postgres", "fail", f"{why}: check the user and password of OTEL_RAG_POSTGRES_DSN")
        return CheckResult("postgres", "fail", f"cannot connect: {problems.describe(error)}")
    version, user = row if row else ("?", "?")
    return CheckResult("postgres", "ok", f"PostgreSQL {version}, connected as {user}")


def check_langsmith(settings: Settings) -> CheckResult:
    if not settings.langsmith_api_key:
        return CheckResult("langsmith", "skip", "LANGSMITH_API_KEY is not set")
    base = settings.langsmith_endpoint
    status, reason = _http(f"{base}/info")
    if status is None or status >= 300:
        what = f"answered {status} {reason}" if status else f"is unreachable ({reason})"
        return CheckResult("langsmith", "fail", f"{base}/info {what}")
    status, reason = _http(f"{base}/sessions?limit=1", headers={"x-api-key": settings.langsmith_api_key})
    if status in (401, 403):
        return CheckResult("langsmith", "fail", f"{base} rejected LANGSMITH_API_KEY ({status} {reason})")
    if status is None or status >= 300:
        return CheckResult("langsmith", "fail", f"{base}/sessions answered {status} {reason}")
    return CheckResult("langsmith", "ok", f"{base} reachable, API key accepted")


def run_checks(settings: Settings) -> list[CheckResult]:
    return [check_otlp(settings), check_postgres(settings), check_langsmith(settings)]
