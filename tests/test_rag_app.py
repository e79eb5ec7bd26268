"""End to end: the reference RAG service under the launcher, its local LLM, Postgres and an OTLP receiver."""

from __future__ import annotations

import httpx
import pytest

from examples.rag_app.pdf import make_pdf
from otel_rag._store import queries
from tests.support.otlp import OtlpReceiver
from tests.support.postgres import Database, scratch_dir
from tests.support.processes import base_env, launch_uvicorn

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`

MARKDOWN = b"""# Returns

Refunds are accepted within thirty days of purchase. The original receipt is required for every refund.

## Shipping

Standard shipping takes five business days. Express shipping costs ten dollars and takes two days.
"""
PDF_PAGES = [
    "Warranty claims are handled by the service desk within ten business days of the request.",
    "Batteries are covered by the warranty for one year from the date of purchase.",
]


def test_upload_query_feedback_across_all_layers(store: Database, otlp: OtlpReceiver, llm: str) -> None:
    env = base_env(
        OPENAI_BASE_URL=llm + "/v1",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
        OTEL_TRACES_EXPORTER="postgres",
        OTEL_LOGS_EXPORTER="postgres",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_RAG_POSTGRES_DSN=store.dsn("rag_writer"),
        OTEL_RAG_SPOOL_DIR=str(scratch_dir("spool-")),
        OTEL_SERVICE_NAME="rag-app",
    )
    with launch_uvicorn(env, app="examples.rag_app.main:app") as app:
        app.wait_ready("/healthz")
        headers = {"X-User-Id": "ana"}
        pdf = httpx.post(
            app.url + "/documents", files={"file": ("warranty.pdf", make_pdf(PDF_PAGES))}, headers=headers, timeout=30
        )
        assert pdf.status_code == 200, pdf.text
        assert pdf.json()["pages"] == 2
        md = httpx.post(app.url + "/documents", files={"file": ("returns.md", MARKDOWN)}, headers=headers, timeout=30)
        assert md.status_code == 200 and md.json()["chunks"] >= 1
        bad = httpx.post(app.url + "/documents", files={"file": ("x.exe", b"MZ")}, headers=headers)
        assert bad.status_code == 415

        answer = httpx.post(
            app.url + "/query", json={"question": "How long do refunds take?"}, headers=headers, timeout=30
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert "thirty days" in body["answer"]
        assert body["groundedness"] == 1.0 and body["cost_usd"] > 0
        assert body["usage"]["input_tokens"] > 0 and body["sources"]
        rating = {"trace_id": body["trace_id"], "span_id": body["span_id"], "rating": 5}
        assert httpx.post(app.url + "/feedback", json=rating).status_code == 200

        httpx.post(llm + "/control", json={"mode": "off_context"})
        drifted = httpx.post(app.url + "/query", json={"question": "What does the warranty cover?"}, headers=headers)
        assert drifted.json()["groundedness"] < 0.5
        httpx.post(llm + "/control", json={"mode": "fail"})
        failed = httpx.post(app.url + "/query", json={"question": "Shipping?"}, headers=headers, timeout=30)
        assert failed.status_code == 500
        otlp.wait_for(lambda r: any(m["name"] == "rag.hallucinations" for m in r.metrics), timeout=30)
        app.stop()

    reader = store.dsn("rag_reader")
    upload = queries.debug_trace(reader, pdf.json()["trace_id"])
    names = [(span.name, span.depth) for span in upload.spans]
    assert names[:2] == [("POST /documents", 0), ("rag.upload", 1)]
    embed = "embeddings text-embedding-3-small"
    assert {name for name, depth in names if depth == 2} >= {"rag.parse", "rag.chunk", embed, "rag.index"}
    by_name = {span.name: span for span in upload.spans}
    assert by_name["rag.parse"].attributes["rag.document.pages"] == 2
    assert by_name[embed].input_tokens and by_name[embed].cost_usd and by_name[embed].kind == "CLIENT"
    assert upload.user_ids == ["ana"]
    stage_events = {line.message for span in upload.spans for line in span.logs}
    assert {"parse.done", "chunk.done", "embed.done", "upload.done"} <= stage_events

    query = queries.debug_trace(reader, body["trace_id"])
    query_spans = {span.name: span for span in query.spans}
    assert {"retrieval", "rag.rerank", "chat gpt-4o-mini"} <= set(query_spans)
    generate = query_spans["chat gpt-4o-mini"]
    assert query_spans["retrieval"].attributes["gen_ai.data_source.id"] == "memory-bm25"
    assert generate.attributes["gen_ai.operation.name"] == "chat" and generate.kind == "CLIENT"
    assert generate.attributes["gen_ai.response.id"].startswith("chatcmpl-")
    assert generate.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert generate.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert (generate.attributes["server.address"], generate.attributes["gen_ai.request.temperature"]) == (
        "127.0.0.1",
        0,
    )
    assert generate.input_tokens == body["usage"]["input_tokens"]
    assert generate.cost_usd == pytest.approx(body["cost_usd"])
    evaluations = [e for e in generate.events if e["name"] == "gen_ai.evaluation.result"]
    assert {e["attributes"]["gen_ai.evaluation.name"] for e in evaluations} == {"groundedness", "hallucination"}
    assert "refund" not in str(generate.attributes).lower()  # prompts are not captured by default
    assert query.cost_usd == pytest.approx(
        sum(line.cost_usd or 0 for line in queries.trace_cost(reader, body["trace_id"]))
    )
    assert body["span_id"] == generate.span_id  # the answer the user rates is the generate span
    feedback_rows = [line for line in generate.logs if line.attributes.get("gen_ai.evaluation.name") == "user_feedback"]
    (feedback,) = feedback_rows  # on the rated answer's own span, not the feedback request's
    assert feedback.attributes["gen_ai.evaluation.score.value"] == 1.0
    assert feedback.attributes["gen_ai.evaluation.explanation"] == "rated 5 of 5 by the user"
    assert feedback.message == "gen_ai.evaluation.result"
    failed_trace = queries.debug_trace(reader, failed.headers["x-trace-id"])
    failing = [span.name for span in failed_trace.spans if span.status == "ERROR"]
    assert failing[0] == "POST /query" and embed in failing  # the LLM endpoint failed the first call
    assert [e.trace_id for e in queries.find_errors(reader, "ana", since="-10m")].count(
        failed.headers["x-trace-id"]
    ) >= 1

    metric_names = {m["name"] for m in otlp.metrics}
    assert {
        "rag.stage.duration",
        "gen_ai.client.token.usage",
        "rag.answers",
        "rag.hallucinations",
        "rag.quality.score",
        "rag.documents",
        "rag.chunks",
        "rag.cost",
    } <= metric_names
