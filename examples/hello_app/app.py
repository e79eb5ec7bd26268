"""A small FastAPI service with no telemetry code of its own: run it under `opentelemetry-instrument`.

It logs through stdlib logging and through structlog, opens nested spans, hands work to a thread pool and
fails on demand, which is what the demo and the launcher tests need to see.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, HTTPException, Request

import otel_rag

app = FastAPI(title="hello")
stdlib_log = logging.getLogger("hello.stdlib")
log = otel_rag.get_logger("hello")
_pool = ThreadPoolExecutor(max_workers=2)


def _count_words(text: str) -> int:
    log.info("words.counted", words=len(text.split()))
    return len(text.split())


@app.get("/hello")
async def hello(name: str = "world") -> dict[str, str]:
    stdlib_log.info("greeting %s", name)
    with otel_rag.trace_span("compose_greeting", **{"greeting.name": name}):
        log.info("greeting.composed", name=name, api_key="sk-live-should-never-be-printed")
    return {"message": f"hello {name}", "trace_id": otel_rag.current_trace_id() or ""}


@app.get("/work")
async def work(text: str = "one two three") -> dict[str, int]:
    otel_rag.set_user("user-from-code")
    words = await asyncio.get_running_loop().run_in_executor(_pool, _count_words, text)
    return {"words": words}


@app.get("/sync")
def sync_endpoint() -> dict[str, str]:
    log.info("sync.handled")
    return {"ok": "yes"}


@app.post("/upload")
async def upload(request: Request) -> dict[str, object]:
    """A toy document upload: parse, chunk and index, each stage a span with its own log lines."""
    body = (await request.body()).decode("utf-8", "replace")
    with otel_rag.trace_span("parse", **{"rag.stage": "parse", "rag.document.size": len(body)}):
        text = " ".join(body.split())
        log.info("document.parsed", characters=len(text))
    with otel_rag.trace_span("chunk", **{"rag.stage": "chunk", "rag.chunk.size": 40}):
        chunks = [text[i : i + 40] for i in range(0, len(text), 40)] or [""]
        for index, chunk in enumerate(chunks):
            log.info("chunk.created", chunk_index=index, characters=len(chunk))
    with otel_rag.trace_span("index", **{"rag.stage": "index", "rag.chunk.count": len(chunks)}):
        await asyncio.sleep(0.01)
        log.info("document.indexed", chunks=len(chunks))
    return {"chunks": len(chunks), "trace_id": otel_rag.current_trace_id() or ""}


@app.get("/fail")
async def fail() -> dict[str, str]:
    log.warning("about.to.fail")
    raise RuntimeError("the demo failure")


@app.get("/missing")
async def missing() -> dict[str, str]:
    raise HTTPException(status_code=404, detail="nothing here")
