"""The standard launcher runs an unmodified FastAPI app with our distro: real processes, real HTTP, real OTLP."""

from __future__ import annotations

import json
import re
import subprocess
import time

import httpx
import pytest

from tests.support.otlp import OtlpReceiver
from tests.support.processes import BIN, REPO, base_env, launch_script, launch_uvicorn

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`

HEX32 = re.compile(r"^[0-9a-f]{32}$")
REQUIRED_KEYS = {"timestamp", "level", "logger", "event", "service", "trace_id", "span_id"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def _env(otlp: OtlpReceiver, **extra: str) -> dict[str, str]:
    return base_env(OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint, **extra)


def test_launcher_picks_our_distro_and_traces_requests(otlp: OtlpReceiver) -> None:
    with launch_uvicorn(_env(otlp)) as app:
        app.wait_ready()
        response = httpx.get(app.url + "/hello", params={"name": "ada"}, headers={"X-User-Id": "user-42"})
        assert response.status_code == 200
        trace_id = response.headers["x-trace-id"]
        assert HEX32.match(trace_id)
        version, tr_trace, tr_span, flags = response.headers["traceresponse"].split("-")
        assert (version, tr_trace) == ("00", trace_id)
        assert re.match(r"^[0-9a-f]{16}$", tr_span) and re.match(r"^[0-9a-f]{2}$", flags)
        assert response.json()["trace_id"] == trace_id  # the handler sees the same trace

        otlp.wait_for(lambda r: any(s["name"] == "GET /hello" and s["trace_id"] == trace_id for s in r.spans))
        spans = [s for s in otlp.spans if s["trace_id"] == trace_id]
        server = next(s for s in spans if s["name"] == "GET /hello")
        assert server["span_id"] == tr_span
        assert server["kind"] == 2  # SERVER
        assert server["attributes"]["enduser.id"] == "user-42"
        assert server["attributes"]["http.route"] == "/hello"
        assert server["attributes"]["http.response.status_code"] == 200
        assert server["resource"]["service.name"] == "hello-test"
        child = next(s for s in spans if s["name"] == "compose_greeting")
        assert child["parent_span_id"] == server["span_id"]
        assert child["attributes"]["enduser.id"] == "user-42"
        assert child["attributes"]["greeting.name"] == "ada"
        # One server span per request: FastAPI's native telemetry and the stock instrumentation stay out.
        assert [s["name"] for s in spans].count("GET /hello") == 1
        assert not [s for s in spans if s["name"].startswith("fastapi.")]

        otlp.wait_for(lambda r: any(m["name"] == "http.server.request.duration" for m in r.metrics))
        # No Postgres exporter here: the sink's own instruments are not registered, so none is exported.
        assert not [m["name"] for m in otlp.metrics if m["name"].startswith("otel_rag.sink.")]
    lines = app.json_lines()
    for line in lines:
        assert line.keys() >= REQUIRED_KEYS, line
        assert ISO_UTC.match(line["timestamp"]), line["timestamp"]
        assert line["service"] == "hello-test"
    request_lines = [line for line in lines if line["trace_id"] == trace_id]
    by_logger = {line["logger"]: line for line in request_lines}
    # stdlib, structlog and the server's access log: one schema, one trace, the user on each.
    assert by_logger["hello.stdlib"]["event"] == "greeting ada"
    assert by_logger["hello"]["event"] == "greeting.composed"
    assert by_logger["hello"]["name"] == "ada"
    access = by_logger["uvicorn.access"]
    assert access["http.response.status_code"] == 200 and access["http.request.method"] == "GET"
    assert (access["client.address"], access["url.path"], access["url.query"]) == ("127.0.0.1", "/hello", "name=ada")
    assert isinstance(access["client.port"], int) and access["network.protocol.version"] == "1.1"
    assert {line["user_id"] for line in request_lines} == {"user-42"}
    assert by_logger["hello"]["span_id"] == child["span_id"]
    assert by_logger["hello.stdlib"]["span_id"] == server["span_id"]
    # Redaction: the secret the handler logs never reaches stdout.
    assert by_logger["hello"]["api_key"] == "[REDACTED]"
    assert "sk-live-should-never-be-printed" not in app.stdout()
    assert any(line["logger"].startswith("uvicorn") and line["trace_id"] is None for line in lines)


def test_incoming_traceparent_is_continued_and_malformed_starts_new_trace(otlp: OtlpReceiver) -> None:
    upstream_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    upstream_span = "00f067aa0ba902b7"
    with launch_uvicorn(_env(otlp)) as app:
        app.wait_ready()
        continued = httpx.get(app.url + "/sync", headers={"traceparent": f"00-{upstream_trace}-{upstream_span}-01"})
        assert continued.status_code == 200
        assert continued.headers["x-trace-id"] == upstream_trace
        for malformed in ("garbage", f"00-{'0' * 32}-{upstream_span}-01", f"zz-{upstream_trace}-xyz-01"):
            response = httpx.get(app.url + "/sync", headers={"traceparent": malformed})
            assert response.status_code == 200, malformed
            assert HEX32.match(response.headers["x-trace-id"])
            assert response.headers["x-trace-id"] not in (upstream_trace, "0" * 32)
        otlp.wait_for(lambda r: any(s["trace_id"] == upstream_trace for s in r.spans))
        server = next(s for s in otlp.spans if s["trace_id"] == upstream_trace)
        assert server["parent_span_id"] == upstream_span


def test_errors_mark_the_span_and_the_log_line_names_the_trace(otlp: OtlpReceiver) -> None:
    with launch_uvicorn(_env(otlp)) as app:
        app.wait_ready()
        response = httpx.get(app.url + "/fail", headers={"X-User-Id": "unlucky"})
        assert response.status_code == 500
        trace_id = response.headers["x-trace-id"]
        missing = httpx.get(app.url + "/missing")
        assert missing.status_code == 404
        otlp.wait_for(lambda r: any(s["trace_id"] == trace_id for s in r.spans))
        otlp.wait_for(lambda r: any(s["trace_id"] == missing.headers["x-trace-id"] for s in r.spans))
        server = next(s for s in otlp.spans if s["trace_id"] == trace_id)
        assert server["status"] == 2  # ERROR
        assert server["attributes"]["error.type"] == "RuntimeError"
        assert any(e["name"] == "exception" for e in server["events"])
        not_found = next(s for s in otlp.spans if s["trace_id"] == missing.headers["x-trace-id"])
        assert not_found["status"] != 2  # a 4xx is the client's error, not the server's
    error_lines = [line for line in app.json_lines() if line.get("exception_type") == "RuntimeError"]
    assert error_lines, "the server's traceback line is missing"
    assert error_lines[0]["trace_id"] == trace_id
    assert error_lines[0]["user_id"] == "unlucky"
    assert "the demo failure" in error_lines[0]["exception"]


def test_set_user_in_code_reaches_logs_and_spans_across_thread_pool(otlp: OtlpReceiver) -> None:
    with launch_uvicorn(_env(otlp)) as app:
        app.wait_ready()
        response = httpx.get(app.url + "/work")
        trace_id = response.headers["x-trace-id"]
        otlp.wait_for(lambda r: any(s["trace_id"] == trace_id for s in r.spans))
        server = next(s for s in otlp.spans if s["trace_id"] == trace_id)
        assert server["attributes"]["enduser.id"] == "user-from-code"
    counted = next(line for line in app.json_lines() if line["event"] == "words.counted")
    assert counted["trace_id"] == trace_id  # logged from a ThreadPoolExecutor via run_in_executor
    assert counted["user_id"] == "user-from-code"


def test_console_format_and_log_level(otlp: OtlpReceiver) -> None:
    env = _env(otlp, OTEL_RAG_LOG_FORMAT="console", OTEL_RAG_LOG_LEVEL="warning")
    with launch_uvicorn(env) as app:
        app.wait_ready()
        httpx.get(app.url + "/hello")
        httpx.get(app.url + "/fail")
    out = app.stdout()
    assert "about.to.fail" in out  # warning passes
    assert "greeting.composed" not in out  # info is filtered
    assert not out.lstrip().startswith("{")


def test_bad_configuration_stops_the_process_with_a_clear_message() -> None:
    result = launch_script(OTEL_RAG_LOG_FORMAT="xml")
    assert result.returncode == 2
    assert "OTEL_RAG_LOG_FORMAT='xml' is not valid; accepted: json, console" in result.stderr
    assert "app ran" not in result.stdout


def test_unknown_exporter_names_the_variable() -> None:
    env = base_env(OTEL_TRACES_EXPORTER="zipkinn")
    result = subprocess.run(
        [str(BIN / "python"), "-c", "import otel_rag; otel_rag.configure()"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "OTEL_TRACES_EXPORTER='zipkinn' is not valid" in result.stderr
    assert "otlp" in result.stderr


def test_sdk_disabled_keeps_json_logs_and_adds_no_tracing(otlp: OtlpReceiver) -> None:
    with launch_uvicorn(_env(otlp, OTEL_SDK_DISABLED="true")) as app:
        app.wait_ready()
        response = httpx.get(app.url + "/hello")
        assert response.status_code == 200
        assert "x-trace-id" not in response.headers
    assert otlp.spans == []
    lines = app.json_lines()
    assert any(line["event"] == "greeting.composed" and line["trace_id"] is None for line in lines)


def test_unreachable_collector_does_not_break_the_app() -> None:
    env = base_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_EXPORTER_OTLP_TIMEOUT="1000")
    with launch_uvicorn(env) as app:
        app.wait_ready()
        for _ in range(20):
            response = httpx.get(app.url + "/hello", timeout=5)
            assert response.status_code == 200
            assert HEX32.match(response.headers["x-trace-id"])
        started = time.monotonic()
        # uvicorn shuts down gracefully, then re-raises SIGTERM: -15 is its normal exit.
        assert app.stop() in (0, -15)
        assert time.monotonic() - started < 15  # the SDK gives up on the dead endpoint within its timeouts
    assert "Traceback" not in app.stderr()


def test_log_lines_are_exported_over_otlp_by_default_as_with_the_stock_distro(otlp: OtlpReceiver) -> None:
    with launch_uvicorn(_env(otlp)) as app:
        app.wait_ready()
        trace_id = httpx.get(app.url + "/hello", headers={"X-User-Id": "u-otlp"}).headers["x-trace-id"]
        otlp.wait_for(lambda r: any(rec["trace_id"] == trace_id for rec in r.logs))
    records = [rec for rec in otlp.logs if rec["trace_id"] == trace_id]
    composed = next(rec for rec in records if rec["body"] == "greeting.composed")
    assert composed["attributes"]["enduser.id"] == "u-otlp"
    assert composed["attributes"]["api_key"] == "[REDACTED]"
    assert composed["scope"] == "hello"
    assert {rec["body"] for rec in records} >= {"greeting world", "greeting.composed"}


def test_no_log_bridge_with_the_logs_exporter_none(otlp: OtlpReceiver) -> None:
    with launch_uvicorn(_env(otlp, OTEL_LOGS_EXPORTER="none")) as app:
        app.wait_ready()
        httpx.get(app.url + "/hello")
        otlp.wait_for(lambda r: len(r.spans) > 0)
    assert otlp.logs == []


def test_postgres_exporter_without_a_dsn_stops_the_launcher() -> None:
    result = launch_script(OTEL_LOGS_EXPORTER="postgres")
    assert result.returncode == 2
    assert "OTEL_RAG_POSTGRES_DSN" in result.stderr and "OTEL_LOGS_EXPORTER includes postgres" in result.stderr


def test_a_boolean_that_is_not_true_or_false_is_false_and_said_at_start_up() -> None:
    result = launch_script(OTEL_SDK_DISABLED="1", OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none")
    assert result.returncode == 0 and "app ran" in result.stdout
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    said = [line for line in lines if line["level"] == "warning" and "OTEL_SDK_DISABLED='1'" in line["event"]]
    assert len(said) == 1 and "treated as false" in said[0]["event"]


def test_start_up_imports_the_postgres_store_and_the_otlp_exporter_only_when_they_are_configured() -> None:
    """~90 ms of start-up (issue 16): what is not configured is not imported."""
    probe = "import sys; print(sorted(m for m in PROBED if m in sys.modules))".replace(
        "PROBED",
        repr(("otel_rag._store.exporters", "psycopg", "opentelemetry.exporter.otlp.proto.http.trace_exporter")),
    )

    def loaded(**env: str) -> str:
        result = launch_script(probe, **env)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()[-1]

    assert loaded(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none") == "[]"
    assert loaded(OTEL_TRACES_EXPORTER="otlp", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none") == str(
        ["opentelemetry.exporter.otlp.proto.http.trace_exporter"]
    )
