"""The reference RAG service with one more route, `/leak`, that puts a secret into every kind of field a service
puts into telemetry: log messages and key/values at any depth (dicts, lists, tuples, JSON text, objects), stdlib
records with tracebacks, span names, attributes, events, links and statuses, a RAG stage (mirrored to LangSmith)
that fails with the secret in its error, and a user id that is an e-mail address (a PII pattern).

    opentelemetry-instrument uvicorn tests.support.leaky_app:app

Only the no-leak test runs it; the secret comes in the request body, so every sink sees it only through the app.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from opentelemetry import trace
from opentelemetry.trace import Link, Status, StatusCode

import otel_rag
from examples.rag_app.main import app
from otel_rag import rag

__all__ = ["app"]

MARK = "LEAKTEST-MARK"  # harmless: proves each sink received what /leak emitted
log = otel_rag.get_logger("leaky")
stdlib = logging.getLogger("leaky.stdlib")


class Carrier:
    """An object whose text holds the secret (logged as an object, rendered as text)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __str__(self) -> str:
        return f"Carrier({self.secret})"


@app.post("/leak")
async def leak(request: Request) -> dict[str, Any]:
    body = await request.json()
    secret: str = body["secret"]
    otel_rag.set_user(body["user"])
    log.info(f"{MARK} message {secret}")
    log.info(
        MARK,
        text=secret,
        nested={"headers": {"X-Forwarded": secret, "list": [secret, (secret, {"deeper": [secret]})]}},
        as_tuple=(secret,),
        as_json=f'{{"note": "{MARK}", "value": {secret!r}}}',
        carrier=Carrier(secret),
    )
    try:
        raise RuntimeError(f"{MARK} failed with {secret}")
    except RuntimeError:
        stdlib.exception("stdlib %s %s", MARK, secret)
    tracer = trace.get_tracer("leaky")
    other = trace.get_current_span().get_span_context()
    with tracer.start_as_current_span(f"{MARK} span {secret}", links=[Link(other, {"why": secret})]) as span:
        span.set_attribute("leak.value", secret)
        span.set_attribute("leak.list", [MARK, secret])
        span.add_event(f"{MARK} event {secret}", {"detail": secret})
        span.set_status(Status(StatusCode.ERROR, f"{MARK} status {secret}"))
    try:
        with rag.generate(model="gpt-4o-mini", provider="openai", note=secret) as stage:
            stage.content("prompt", f"{MARK} prompt {secret}")
            raise ValueError(f"{MARK} generate failed {secret}")
    except ValueError:
        pass
    return {"trace_id": otel_rag.current_trace_id()}
