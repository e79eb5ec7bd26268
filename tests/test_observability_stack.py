"""End to end through the real stack: the reference RAG service -> our Collector -> Jaeger and Prometheus ->
Alertmanager -> a webhook; every Grafana panel's query run on the resulting data.

One stack for the module (started once, about 10 s), loaded once with uploads, questions (grounded and
off-context), feedback, a refused upload and failing questions. The tests then read what each program saw.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.grafana import dashboard_targets, promql_for_test, sql_for_test
from tests.support.llm import local_llm
from tests.support.postgres import Database, scratch_dir
from tests.support.processes import REPO, AppProcess, base_env, launch_uvicorn
from tests.support.stack import (
    Alertmanager,
    Collector,
    Jaeger,
    Prometheus,
    WebhookReceiver,
    copy_logs,
    fast_rules,
    wait_until,
)

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`

DOCUMENTS = [
    ("returns.md", b"# Returns\n\nRefunds are accepted within thirty days of purchase with the original receipt.\n"),
    ("shipping.md", b"# Shipping\n\nStandard shipping takes five business days. Express shipping takes two days.\n"),
    ("warranty.txt", b"Batteries are covered by the warranty for one year from the date of purchase.\n"),
]
QUESTIONS = ["How long do refunds take?", "How long does shipping take?", "What does the warranty cover?"]
ARTIFACTS = REPO / "test-artifacts" / "observability-stack"


@dataclass
class Stack:
    jaeger: Jaeger
    collector: Collector
    prometheus: Prometheus
    alertmanager: Alertmanager
    webhook: WebhookReceiver
    app: AppProcess
    llm: str
    store: Database
    upload_trace_ids: list[str] = field(default_factory=list)
    failed_trace_ids: list[str] = field(default_factory=list)


def _load(stack: Stack) -> None:
    """Traffic that gives every dashboard panel something to show and pushes the 5xx share over 5 %."""
    url, user = stack.app.url, {"X-User-Id": "ana"}
    for name, content in DOCUMENTS:
        response = httpx.post(url + "/documents", files={"file": (name, content)}, headers=user, timeout=30)
        assert response.status_code == 200, response.text
        stack.upload_trace_ids.append(response.headers["X-Trace-Id"])
    assert httpx.post(url + "/documents", files={"file": ("x.exe", b"MZ")}, headers=user).status_code == 415
    for mode in ("normal", "off_context"):
        httpx.post(stack.llm + "/control", json={"mode": mode})
        for question in QUESTIONS:
            answer = httpx.post(url + "/query", json={"question": question}, headers=user, timeout=30)
            assert answer.status_code == 200, answer.text
            feedback = {"trace_id": answer.json()["trace_id"], "rating": 5 if mode == "normal" else 1}
            assert httpx.post(url + "/feedback", json=feedback).status_code == 200
    # Failures spread over a few seconds, as an outage looks: a counter's first sample is not an increase to
    # Prometheus, so errors that all happen before the first scrape of their series would not show in rate().
    httpx.post(stack.llm + "/control", json={"mode": "fail"})
    for question in QUESTIONS * 4:
        failed = httpx.post(url + "/query", json={"question": question}, headers={"X-User-Id": "bob"}, timeout=30)
        assert failed.status_code == 500
        stack.failed_trace_ids.append(failed.headers["X-Trace-Id"])
        time.sleep(0.4)
    httpx.post(stack.llm + "/control", json={"mode": "normal"})


@pytest.fixture(scope="module")
def stack(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stack")
    services: list[Any] = []
    webhook = WebhookReceiver()
    try:
        jaeger = Jaeger(workdir)
        services.append(jaeger)
        collector = Collector(workdir, traces_backend=jaeger.otlp_grpc)
        services.append(collector)
        alertmanager = Alertmanager(workdir, webhook.url)
        services.append(alertmanager)
        targets = {"otel-collector": collector.metrics_target, "otel-collector-self": collector.telemetry_target}
        prometheus = Prometheus(workdir, targets, alertmanager.url, fast_rules(workdir))
        services.append(prometheus)
        store = Database(pg_server)
        with local_llm() as llm:
            env = base_env(
                OPENAI_BASE_URL=llm + "/v1",
                OTEL_SERVICE_NAME="rag-app",
                OTEL_EXPORTER_OTLP_ENDPOINT=collector.otlp_http,
                OTEL_TRACES_EXPORTER="otlp,postgres",
                OTEL_METRICS_EXPORTER="otlp",
                OTEL_LOGS_EXPORTER="postgres",
                OTEL_RAG_POSTGRES_DSN=store.dsn("rag_writer"),
                OTEL_RAG_SPOOL_DIR=str(scratch_dir("spool-")),
            )
            with launch_uvicorn(env, app="examples.rag_app.main:app") as app:
                app.wait_ready("/healthz")
                loaded = Stack(jaeger, collector, prometheus, alertmanager, webhook, app, llm, store)
                _load(loaded)
                yield loaded
    finally:
        for service in reversed(services):
            service.stop()
        webhook.stop()
        copy_logs(services, ARTIFACTS)


def test_a_request_trace_reaches_jaeger_through_the_collector(stack: Stack) -> None:
    trace_id = stack.upload_trace_ids[0]
    found = wait_until(lambda: stack.jaeger.trace(trace_id), 30, f"trace {trace_id} in Jaeger")
    assert found["traceID"] == trace_id
    names = {span["operationName"] for span in found["spans"]}
    embed = "embeddings text-embedding-3-small"
    assert {"POST /documents", "rag.upload", "rag.parse", "rag.chunk", embed, "rag.index"} <= names
    services = {process["serviceName"] for process in found["processes"].values()}
    assert services == {"rag-app"}
    root = next(span for span in found["spans"] if span["operationName"] == "POST /documents")
    tags = {tag["key"]: tag["value"] for tag in root["tags"]}
    assert tags["http.route"] == "/documents" and tags["enduser.id"] == "ana"


def test_failing_requests_fire_the_error_alert_to_the_webhook(stack: Stack) -> None:
    def error_alert() -> dict[str, Any] | None:
        for notification in stack.webhook.received:
            for alert in notification["alerts"]:
                if alert["labels"]["alertname"] == "RagHighErrorRate" and alert["status"] == "firing":
                    return {"path": notification["path"], **alert}
        return None

    try:
        alert = wait_until(error_alert, 90, "RagHighErrorRate at the webhook", interval=1)
    except AssertionError as error:
        raise AssertionError(f"{error}\nPrometheus alerts: {stack.prometheus.alerts()}") from None
    assert alert["path"] == "/rag-oncall", "severity=page routes to the on-call receiver"
    assert alert["labels"]["job"] == "rag-app"
    assert alert["labels"]["severity"] == "page" and alert["labels"]["team"] == "rag"
    assert re.match(r"rag-app: \d+(\.\d+)?% of requests fail", alert["annotations"]["summary"])
    assert alert["annotations"]["runbook_url"].endswith("docs/RUNBOOKS.md#raghigherrorrate")
    assert "service=rag-app" in alert["annotations"]["traces"]
    assert "otel-rag errors --since" in alert["annotations"]["traces"]


def test_the_error_series_carries_exemplars_that_lead_to_the_failing_traces(stack: Stack) -> None:
    query = 'http_server_request_duration_seconds_bucket{job="rag-app",http_response_status_code="500"}'

    def exemplar_trace_ids() -> set[str]:
        found = {
            exemplar["labels"].get("trace_id", "")
            for series in stack.prometheus.exemplars(query)
            for exemplar in series["exemplars"]
        }
        return found & set(stack.failed_trace_ids)

    linked = wait_until(exemplar_trace_ids, 60, "an exemplar with a failed request's trace id")
    trace_id = sorted(linked)[0]
    failed = wait_until(lambda: stack.jaeger.trace(trace_id), 30, f"failed trace {trace_id} in Jaeger")
    root = next(span for span in failed["spans"] if span["operationName"] == "POST /query")
    assert {"key": "error", "type": "bool", "value": True} in root["tags"]
    # the runbook's shell route to the same traces: the store lists bob's failures with these trace ids
    with psycopg.connect(stack.store.dsn("rag_reader")) as connection:
        stored = connection.execute(
            "SELECT DISTINCT trace_id FROM otel_rag.spans WHERE user_id = %s AND status = 'ERROR'", ("bob",)
        ).fetchall()
    assert {row[0] for row in stored} >= set(stack.failed_trace_ids)


def test_every_dashboard_panel_returns_data_after_the_load(stack: Stack) -> None:
    # metrics are exported every 0.5 s and scraped every 1 s: wait until the last failures are visible
    wait_until(lambda: stack.prometheus.query('sum(rag_answers_total{job="rag-app"}) >= 6'), 30, "the load's answers")
    empty: list[str] = []
    checked = 0
    for dashboard, panel, target in dashboard_targets():
        where = f"{dashboard} / {panel['title']} / {target['refId']}"
        if panel["datasource"]["uid"] == "prometheus":
            if not stack.prometheus.query(promql_for_test(target["expr"])):
                empty.append(where)
        else:
            with psycopg.connect(stack.store.dsn("rag_reader")) as connection:
                if not connection.execute(sql_for_test(target["rawSql"])).fetchall():
                    empty.append(where)
        checked += 1
    assert checked >= 40
    assert empty == [], f"panels without data after the load: {empty}"


def test_a_jaeger_outage_loses_no_trace(stack: Stack, tmp_path: Path) -> None:
    stack.jaeger.stop()
    during = []
    for question in QUESTIONS:
        response = httpx.post(stack.app.url + "/query", json={"question": question}, timeout=30)
        during.append(response.headers["X-Trace-Id"])
    queued = 'otelcol_exporter_queue_size{exporter="otlp_grpc/traces"} > 0'
    wait_until(lambda: stack.prometheus.query(queued), 30, "spans waiting in the Collector's queue on disk")
    stack.jaeger.start()

    def whole(trace_id: str) -> bool:
        """The trace with its generate stage: the queue drains in batches, so a trace may show up in parts."""
        found = stack.jaeger.trace(trace_id)
        return found is not None and any(span["operationName"] == "chat gpt-4o-mini" for span in found["spans"])

    for trace_id in during:
        wait_until(lambda: whole(trace_id), 60, f"trace {trace_id} with its chat span after Jaeger came back")  # noqa: B023
