"""A small OpenAI-compatible server for the demo and the tests: answers from the context it is given.

    python -m examples.rag_app.llm_server --port 8001      # then OPENAI_BASE_URL=http://127.0.0.1:8001/v1

`POST /v1/chat/completions` answers extractively: from the "Context:" part of the last user message it returns the
sentences that share the most words with the question, and reports token usage (about 4 characters a token).
`POST /v1/embeddings` returns deterministic hashed bag-of-words vectors with usage. `POST /control` switches the
behaviour at run time, to exercise latency, error and hallucination paths:

    {"mode": "normal" | "slow" | "fail" | "off_context", "delay": seconds, "fail_ratio": 0..1,
     "drift": {"<model>": 0..1}, "seconds_per_1k_tokens": seconds}

`drift` makes a model answer off its context in that share of its answers (a model that hallucinates more, as a
cheaper or silently updated one may); `seconds_per_1k_tokens` makes each call take time in proportion to its
tokens (prompt and answer, or the texts embedded), as a real model does (0 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import random
import re
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

app = FastAPI(title="local-llm")
STATE: dict[str, Any] = {"mode": "normal", "delay": 1.5, "fail_ratio": 1.0, "drift": {}, "seconds_per_1k_tokens": 0.0}
_WORD = re.compile(r"[\w']+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
OFF_CONTEXT = "The moon landing happened in 1969 and the capital of Australia is Canberra."


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if len(w) > 2}


def _answer(prompt: str) -> str:
    context, _, question = prompt.rpartition("Question:")
    context = context.split("Context:", 1)[-1]
    wanted = _words(question)
    sentences = [s.strip() for s in _SENTENCE.split(context) if s.strip()]
    ranked = sorted(sentences, key=lambda s: len(_words(s) & wanted), reverse=True)
    best = [s for s in ranked[:2] if _words(s) & wanted]
    return " ".join(best) if best else "I could not find that in the documents."


async def _misbehave() -> None:
    mode = STATE["mode"]
    if mode == "slow":
        await asyncio.sleep(float(STATE["delay"]))
    if mode == "fail" and random.random() < float(STATE["fail_ratio"]):
        raise HTTPException(status_code=503, detail="the model is overloaded (simulated)")


@app.post("/v1/chat/completions")
async def chat(body: dict[str, Any]) -> JSONResponse:
    await _misbehave()
    messages = body.get("messages") or []
    prompt = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    user = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    model = str(body.get("model", "gpt-4o-mini"))
    strays = random.random() < float(STATE["drift"].get(model, 0.0))
    text = OFF_CONTEXT if STATE["mode"] == "off_context" or strays else _answer(user)
    usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(text)}
    tokens = usage["prompt_tokens"] + usage["completion_tokens"]
    await asyncio.sleep(float(STATE["seconds_per_1k_tokens"]) * tokens / 1000)
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return JSONResponse(
        {
            "id": f"chatcmpl-{hashlib.sha1(prompt.encode()).hexdigest()[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        }
    )


def _vector(text: str, dimensions: int = 64) -> list[float]:
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % dimensions] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


@app.post("/v1/embeddings")
async def embeddings(body: dict[str, Any]) -> JSONResponse:
    await _misbehave()
    inputs = body.get("input") or []
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    tokens = sum(_tokens(str(text)) for text in inputs)
    await asyncio.sleep(float(STATE["seconds_per_1k_tokens"]) * tokens / 1000)
    return JSONResponse(
        {
            "object": "list",
            "model": body.get("model", "text-embedding-3-small"),
            "data": [{"object": "embedding", "index": i, "embedding": _vector(str(t))} for i, t in enumerate(inputs)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@app.post("/control")
async def control(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("mode", STATE["mode"]) not in ("normal", "slow", "fail", "off_context"):
        raise HTTPException(status_code=400, detail="mode must be normal, slow, fail or off_context")
    drift = body.get("drift", {})
    if not isinstance(drift, dict) or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in drift.values()):
        raise HTTPException(status_code=400, detail="drift must map model names to a share between 0 and 1")
    STATE.update({k: v for k, v in body.items() if k in STATE})
    return STATE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
