"""A local server speaking the part of LangSmith's API the real `langsmith` SDK calls when ingesting runs.

`GET /info`, `GET /sessions?name=` (project lookup), `POST /runs/multipart` (parts `post.{id}`, `post.{id}.inputs`,
`post.{id}.outputs`, ..., zstd-compressed or not) and `POST /runs/batch` (the JSON fallback). It decodes what
arrives and keeps the runs, so tests assert on exactly what the SDK sent. `multipart=False` answers 404 to
multipart, to exercise the fallback.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import zstandard

PROJECT_ID = str(uuid.UUID(int=7))
TENANT_ID = str(uuid.UUID(int=9))


def parse_multipart(body: bytes, content_type: str) -> dict[str, Any]:
    """{part name: decoded JSON} of a multipart/form-data body."""
    boundary = re.search(r"boundary=([^;]+)", content_type)
    assert boundary, content_type
    parts: dict[str, Any] = {}
    for chunk in body.split(b"--" + boundary.group(1).strip('"').encode()):
        if b"\r\n\r\n" not in chunk:
            continue
        head, _, payload = chunk.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head)
        if name:
            parts[name.group(1).decode()] = json.loads(payload.removesuffix(b"\r\n") or b"null")
    return parts


class LangSmithStub:
    def __init__(
        self,
        multipart: bool = True,
        fail: bool = False,
        fail_status: int = 503,
        fail_detail: str = "down",
        unknown_project_for: int = 0,
        delay: float = 0.0,
    ) -> None:
        """`fail` (switchable at any time): POSTs answer `fail_status` with `fail_detail` (the SDK retries a 503
        itself for a while, not a 422). The first `unknown_project_for` project lookups answer 404. `delay`: seconds
        each POST takes before its runs are stored and answered (a slow LangSmith)."""
        self.runs: dict[str, dict[str, Any]] = {}
        self.fail_status = fail_status
        self.fail_detail = fail_detail
        self.unknown_project_for = unknown_project_for
        self.requests: list[str] = []
        self.bodies: list[bytes] = []  # every POST body, decompressed
        self.compressed = 0
        self.multipart = multipart
        self.fail = fail
        self.delay = delay
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                stub.requests.append(f"GET {self.path}")
                if self.path.startswith("/info"):
                    self._reply(200, {"version": "0.10.0", "batch_ingest_config": {"use_multipart_endpoint": True}})
                elif self.path.startswith("/sessions") and stub.unknown_project_for > 0:
                    stub.unknown_project_for -= 1
                    self._reply(404, {"detail": "project not found"})
                elif self.path.startswith("/sessions"):
                    project = {
                        "id": PROJECT_ID,
                        "tenant_id": TENANT_ID,
                        "name": "rag-tests",
                        "reference_dataset_id": None,
                    }
                    self._reply(200, [project])
                else:
                    self._reply(404, {"detail": "not found"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.requests.append(f"POST {self.path}")
                time.sleep(stub.delay)
                if stub.fail:
                    self._reply(stub.fail_status, {"detail": stub.fail_detail})
                    return
                if self.headers.get("Content-Encoding") == "zstd":
                    body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
                    stub.compressed += 1
                stub.bodies.append(body)
                if self.path.startswith("/runs/multipart"):
                    if not stub.multipart:
                        self._reply(404, {"detail": "no multipart here"})
                        return
                    stub._store_parts(parse_multipart(body, self.headers["Content-Type"]))
                elif self.path.startswith("/runs/batch"):
                    payload = json.loads(body)
                    for run in payload.get("post", []) + payload.get("patch", []):
                        stub._merge(run["id"], run)
                else:
                    self._reply(404, {"detail": "not found"})
                    return
                self._reply(202, {})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _merge(self, run_id: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self.runs.setdefault(run_id, {}).update(fields)

    def _store_parts(self, parts: dict[str, Any]) -> None:
        for name, value in parts.items():
            operation, _, rest = name.partition(".")
            run_id, _, field = rest.partition(".")
            if operation in ("post", "patch"):
                self._merge(run_id, {field: value} if field else value)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
