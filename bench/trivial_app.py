"""The benchmark's app: one trivial FastAPI endpoint and no telemetry code."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}
