"""Fail closed: a setting that cannot work stops start-up with one line (exit 2); a working one is never refused.

Real processes under the real launcher: the app must either run fully observed (JSON logs with redaction, export)
or not run at all, and no message may show a password or token.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.support.processes import BIN, REPO, base_env, launch_script, launch_uvicorn
from tests.support.stack import Collector, Jaeger, copy_logs, wait_until

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`

SECRET = "hunter2-never-shown"


def _unwritable_spool() -> str:
    blocker = Path(tempfile.mkdtemp()) / "a-file"
    blocker.write_text("not a folder")
    return str(blocker / "spool")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not valid"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json'"),
        ({"OTEL_PYTHON_EXCLUDED_URLS": "/healthz,(unclosed"}, "OTEL_PYTHON_EXCLUDED_URLS='/healthz,(unclosed'"),
        ({"OTEL_RAG_PRICES_FILE": "/nonexistent/prices.json"}, "OTEL_RAG_PRICES_FILE='/nonexistent/prices.json'"),
        ({"OTEL_RAG_SPOOL_MAX_BYTES": "0"}, "OTEL_RAG_SPOOL_MAX_BYTES='0' is not valid"),
        (
            {"OTEL_LOGS_EXPORTER": "postgres", "OTEL_RAG_POSTGRES_DSN": f"postgresq://rag:{SECRET}@db/obs"},
            "OTEL_RAG_POSTGRES_DSN='postgresq://rag:****@db/obs' is not valid",
        ),
        (
            {"LANGSMITH_API_KEY": "lsv2_pt_x", "LANGSMITH_ENDPOINT": f"htps://me:{SECRET}@smith.example"},
            "LANGSMITH_ENDPOINT='htps://me:****@smith.example' is not valid",
        ),
        (
            {"OTEL_LOGS_EXPORTER": "postgres", "OTEL_RAG_POSTGRES_DSN": "postgresql://db/obs"},
            "OTEL_RAG_SPOOL_DIR=",
        ),
        # An error inside the SDK's own set-up (not one of ours): still one line, still exit 2.
        ({"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "lots"}, "cannot start telemetry: ValueError"),
    ],
)
def test_a_setting_that_cannot_work_stops_start_up_with_one_line(env: dict[str, str], says: str) -> None:
    if env.get("OTEL_RAG_POSTGRES_DSN") == "postgresql://db/obs":
        env = {**env, "OTEL_RAG_SPOOL_DIR": _unwritable_spool()}
    result = launch_script(**env)
    assert result.returncode == 2, result.stderr
    assert "app ran" not in result.stdout
    ours = [line for line in result.stderr.splitlines() if line.startswith("otel-rag: ")]
    assert len(ours) == 1 and says in ours[0], result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_a_propagator_typo_never_leaves_the_app_running_unobserved() -> None:
    # The stock launcher imports OTEL_PROPAGATORS before any distro loads: it stops there (its own message).
    result = launch_script(OTEL_PROPAGATORS="tracecontxt")
    assert result.returncode != 0 and "app ran" not in result.stdout
    assert "tracecontxt" in result.stderr
    # In code, configure() checks it before anything imports the propagators, and names the variable.
    code = "import otel_rag\ntry:\n    otel_rag.configure()\nexcept otel_rag.ConfigError as error:\n    print(error)"
    configured = subprocess.run(
        [str(BIN / "python"), "-c", code],
        env=base_env(OTEL_PROPAGATORS="tracecontxt"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "OTEL_PROPAGATORS='tracecontxt' is not valid; accepted: " in configured.stdout, configured.stderr
    assert "tracecontext" in configured.stdout


def test_grpc_sends_to_the_collector_and_logs_stay_redacted(tmp_path: Path) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc (the SDK's default, what a Collector on 4317 expects) works end to end."""
    jaeger = Jaeger(tmp_path)
    collector = Collector(tmp_path, traces_backend=jaeger.otlp_grpc)
    try:
        env = base_env(
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{collector.otlp_grpc}",
            OTEL_SERVICE_NAME="grpc-test",
        )
        with launch_uvicorn(env) as app:
            app.wait_ready()
            trace_id = httpx.get(app.url + "/hello").headers["x-trace-id"]
            found = wait_until(lambda: jaeger.trace(trace_id), 30, "the trace in Jaeger, sent over gRPC")
            assert {span["operationName"] for span in found["spans"]} >= {"GET /hello", "compose_greeting"}
            wait_until(
                lambda: "http_server_request_duration_seconds_count{" in collector.metrics_text(),
                30,
                "the request duration metric, sent over gRPC",
            )
        lines = app.json_lines()
        composed = next(line for line in lines if line["event"] == "greeting.composed" and line["trace_id"] == trace_id)
        assert composed["api_key"] == "[REDACTED]"
        assert "sk-live-should-never-be-printed" not in app.stdout() + app.stderr()
    finally:
        copy_logs([collector, jaeger], REPO / "test-artifacts" / "fail-closed")
        collector.stop()
        jaeger.stop()
