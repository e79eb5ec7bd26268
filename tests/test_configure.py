"""`otel_rag.configure()` + `instrument_app()` without the launcher, in a real uvicorn process."""

from __future__ import annotations

import httpx
import pytest

from otel_rag.testing import free_port
from tests.support.otlp import OtlpReceiver
from tests.support.processes import BIN, AppProcess, base_env

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`


def test_programmatic_configuration_matches_the_launcher(otlp: OtlpReceiver) -> None:
    port = free_port()
    env = base_env(OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint)
    argv = [str(BIN / "uvicorn"), "examples.hello_app.configured:app", "--port", str(port)]
    with AppProcess(argv, env, port) as app:
        app.wait_ready()
        response = httpx.get(app.url + "/hello", headers={"X-User-Id": "code-user"})
        trace_id = response.headers["x-trace-id"]
        otlp.wait_for(lambda r: any(s["trace_id"] == trace_id and s["name"] == "GET /hello" for s in r.spans))
        server_spans = [s for s in otlp.spans if s["trace_id"] == trace_id and s["kind"] == 2]
        assert len(server_spans) == 1
        assert server_spans[0]["attributes"]["enduser.id"] == "code-user"
    lines = app.json_lines()
    warnings = [line for line in lines if "configure() was called again" in line["event"]]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning"
    assert any(line["event"] == "greeting.composed" and line["trace_id"] == trace_id for line in lines)
