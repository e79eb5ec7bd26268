"""The app both distros run in tests/test_sdk_parity.py: a FastAPI endpoint that logs through stdlib logging.

A file handler (which otel-rag leaves alone, as it does every non-console handler) writes the log correlation
fields of each record, so the test can compare what `OTEL_PYTHON_LOG_CORRELATION` puts on records.
"""

from __future__ import annotations

import json
import logging
import os

from fastapi import FastAPI, Request, Response


class _CorrelationFields(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        fields = {name: getattr(record, name, None) for name in ("otelTraceID", "otelSpanID", "otelTraceSampled")}
        fields["otelServiceName"] = getattr(record, "otelServiceName", None)
        with open(os.environ["PARITY_RECORDS"], "a", encoding="utf-8") as file:
            file.write(json.dumps(fields) + "\n")


app_log = logging.getLogger("parity.app")
app_log.addHandler(_CorrelationFields())
app_log.setLevel(logging.INFO)
app = FastAPI()


@app.get("/work")
def work(response: Response) -> dict[str, str]:
    app_log.warning("work done")
    response.headers["X-Answer"] = "42"
    response.headers["Set-Cookie"] = "session=abc"
    return {"ok": "yes"}


@app.get("/items/{item_id}")
def item(item_id: int, q: str = "") -> dict[str, object]:
    return {"id": item_id, "q": q}


@app.post("/items")
async def create_item(request: Request) -> dict[str, int]:
    return {"size": len(await request.body())}


@app.get("/fail")
def fail() -> None:
    raise RuntimeError("the handler failed")
