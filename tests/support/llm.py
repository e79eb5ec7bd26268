"""The reference service's local OpenAI-compatible LLM (examples/rag_app/llm_server.py) as a real process."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from otel_rag.testing import free_port
from tests.support.processes import BIN, REPO


@contextmanager
def local_llm() -> Iterator[str]:
    """Start the LLM server on a free port; yields its base URL (POST /control switches its mode)."""
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "python"), "-m", "examples.rag_app.llm_server", "--port", str(port)], cwd=REPO
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.post(url + "/control", json={"mode": "normal"}, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("the local LLM server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(10)
