"""RAG stage helpers, prices and quality signals, on the real SDK with in-memory exporters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry.trace import SpanKind, StatusCode

from otel_rag import groundedness, rag, record_quality, trace_span
from otel_rag._config.settings import ConfigError, Settings, load_settings
from otel_rag._telemetry.logs import setup_logging
from otel_rag.rag import _pricing as pricing
from otel_rag.testing import CapturedTelemetry


@pytest.fixture
def logged(sdk: CapturedTelemetry, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    setup_logging(load_settings({"OTEL_SERVICE_NAME": "rag-test"}), provider=sdk.logger_provider)

    def records() -> list[Any]:
        return [data.log_record for data in sdk.logs.get_finished_logs()]

    yield records
    structlog.reset_defaults()


def _metric(sdk: CapturedTelemetry, name: str, **attributes: Any) -> list[Any]:
    return [p for p in sdk.metric_points(name) if all(p.attributes.get(k) == v for k, v in attributes.items())]


def test_six_layers_nest_with_stable_names_and_attributes(sdk: CapturedTelemetry, logged: Any) -> None:
    with rag.upload(document_id="doc-1", filename="a.pdf", size=2048) as upload:
        with rag.parse(document_id="doc-1") as parse:
            parse.set(pages=3)
        with rag.chunk(chunk_size=500, chunk_overlap=50) as chunk:
            chunk.set(chunk_count=7)
        with rag.embed(model="text-embedding-3-small", provider="openai", input_count=7) as embed:
            embed.usage(input_tokens=1500)
    with rag.retrieve(index="docs", top_k=5) as retrieve:
        retrieve.results(4, best_score=0.83)
    with rag.rerank(reranker="bm25", top_k=3) as rerank:
        rerank.results(3, best_score=0.9)
    with rag.generate(model="gpt-4o-mini-2024-07-18", provider="openai", temperature=0.2, max_tokens=300) as generate:
        generate.usage(input_tokens=1000, output_tokens=200)
        generate.set(response_model="gpt-4o-mini-2024-07-18", response_id="chatcmpl-1", finish_reasons=["stop"])
    spans = {span.name: span for span in sdk.finished()}
    # The GenAI conventions' names: {operation} {model} for model calls, the operation for retrieval.
    embed_name, generate_name = "embeddings text-embedding-3-small", "chat gpt-4o-mini-2024-07-18"
    assert set(spans) == {"rag.upload", "rag.parse", "rag.chunk", embed_name, "retrieval", "rag.rerank", generate_name}
    assert {name: spans[name].kind for name in (embed_name, generate_name, "retrieval", "rag.rerank")} == {
        embed_name: SpanKind.CLIENT,
        generate_name: SpanKind.CLIENT,
        "retrieval": SpanKind.INTERNAL,
        "rag.rerank": SpanKind.INTERNAL,
    }
    assert {span.attributes["rag.stage"] for span in spans.values()} == {
        "upload",
        "parse",
        "chunk",
        "embed",
        "retrieve",
        "rerank",
        "generate",
    }
    for name in ("rag.parse", "rag.chunk", embed_name):
        assert spans[name].parent.span_id == upload.span.get_span_context().span_id  # type: ignore[union-attr]
    assert spans["rag.parse"].attributes["rag.document.pages"] == 3
    assert spans["rag.chunk"].attributes["rag.chunk.count"] == 7
    assert spans["rag.chunk"].attributes["rag.chunk.overlap"] == 50
    embed_attrs = spans[embed_name].attributes
    assert embed_attrs["gen_ai.operation.name"] == "embeddings"
    assert embed_attrs["gen_ai.usage.input_tokens"] == 1500
    assert embed_attrs["rag.cost_usd"] == pytest.approx(1500 * 0.02 / 1e6)
    retrieve_attrs = spans["retrieval"].attributes
    assert retrieve_attrs["rag.retrieval.best_score"] == 0.83 and retrieve_attrs["gen_ai.operation.name"] == "retrieval"
    assert (retrieve_attrs["gen_ai.data_source.id"], retrieve_attrs["gen_ai.retrieval.top_k"]) == ("docs", 5)
    rerank_attrs = spans["rag.rerank"].attributes
    assert "gen_ai.operation.name" not in rerank_attrs  # not an operation the GenAI conventions define
    assert (rerank_attrs["rag.rerank.model"], rerank_attrs["rag.rerank.top_k"]) == ("bm25", 3)
    generate_attrs = spans[generate_name].attributes
    assert generate_attrs["gen_ai.operation.name"] == "chat"
    assert generate_attrs["gen_ai.provider.name"] == "openai"
    assert (generate_attrs["gen_ai.request.temperature"], generate_attrs["gen_ai.request.max_tokens"]) == (0.2, 300)
    assert generate_attrs["gen_ai.response.id"] == "chatcmpl-1"
    assert generate_attrs["gen_ai.response.finish_reasons"] == ("stop",)
    # A dated model name is priced as its family: gpt-4o-mini at 0.15 / 0.60 USD per million tokens.
    assert generate_attrs["rag.cost_usd"] == pytest.approx((1000 * 0.15 + 200 * 0.60) / 1e6)
    events = {record.body: record for record in logged()}
    assert {"upload.done", "parse.done", "chunk.done", "embed.done", "retrieve.done", "generate.done"} <= set(events)
    done = events["generate.done"]
    assert done.attributes["gen_ai.usage.output_tokens"] == 200 and done.attributes["rag.cost_usd"] > 0
    assert done.span_id == spans[generate_name].context.span_id  # logged inside its span


def test_metrics_per_stage_tokens_cost_and_counts(sdk: CapturedTelemetry) -> None:
    with rag.upload(document_id="d"), rag.chunk() as chunk:
        chunk.set(chunk_count=4)
    with rag.retrieve(index="i", top_k=5) as retrieve:
        retrieve.results(0)
    with rag.generate(model="gpt-4o", provider="openai") as generate:
        generate.usage(100, 10)
    assert _metric(sdk, "rag.stage.duration", **{"rag.stage": "generate"})
    tokens = _metric(
        sdk, "gen_ai.client.token.usage", **{"gen_ai.token.type": "output", "gen_ai.request.model": "gpt-4o"}
    )
    assert tokens and tokens[0].sum >= 10
    assert _metric(sdk, "gen_ai.client.operation.duration", **{"gen_ai.operation.name": "chat"})
    assert sum(p.value for p in _metric(sdk, "rag.cost", **{"rag.stage": "generate"})) > 0
    assert sum(p.value for p in _metric(sdk, "rag.chunks")) >= 4
    assert sum(p.value for p in _metric(sdk, "rag.retrieval.empty")) >= 1
    assert sum(p.value for p in _metric(sdk, "rag.documents")) >= 1


def test_unknown_model_has_no_cost_and_one_warning(sdk: CapturedTelemetry, caplog: pytest.LogCaptureFixture) -> None:
    pricing.reload_prices()
    for _ in range(3):
        with rag.generate(model="my-private-llm") as generate:
            generate.usage(100, 100)
    span = sdk.finished()[-1]
    assert "rag.cost_usd" not in span.attributes  # absent, not zero
    warnings = [r for r in caplog.records if "no price for model 'my-private-llm'" in r.getMessage()]
    assert len(warnings) == 1


def test_prices_file_overrides_and_bad_file_is_a_config_error(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"my-private-llm": {"input": 1.0, "output": 2.0}, "gpt-4o": {"input": 1.0}}))
    try:
        pricing.reload_prices(load_settings({"OTEL_RAG_PRICES_FILE": str(prices)}))
        assert pricing.cost_usd("my-private-llm", 1_000_000, 1_000_000) == pytest.approx(3.0)
        assert pricing.cost_usd("gpt-4o", 1_000_000, 5) == pytest.approx(1.0)
    finally:
        pricing.reload_prices(Settings())
    prices.write_text("{not json")
    with pytest.raises(ConfigError, match="OTEL_RAG_PRICES_FILE"):  # at start-up, not on a request
        load_settings({"OTEL_RAG_PRICES_FILE": str(prices)})


@pytest.mark.parametrize(
    ("tokens", "valid"),
    [
        ((10, 5), True),
        ((10.0, None), True),
        (("10", 5), False),
        ((-1, 5), False),
        ((1.5, 2), False),
        ((float("nan"), 1), False),
        ((2**70, 1), False),
        ((True, 1), False),
        (([1], 1), False),
    ],
)
def test_usage_never_raises_into_the_request(sdk: CapturedTelemetry, tokens: tuple[Any, Any], valid: bool) -> None:
    with rag.generate(model="gpt-4o-mini") as generate:
        generate.usage(*tokens)
    attributes = sdk.finished()[-1].attributes
    assert ("gen_ai.usage.input_tokens" in attributes) is valid
    assert ("rag.cost_usd" in attributes) is valid
    assert pricing.cost_usd("gpt-4o-mini", "10", 5) is None  # type: ignore[arg-type]


def test_errors_and_decorators(sdk: CapturedTelemetry, caplog: pytest.LogCaptureFixture) -> None:
    @rag.retrieve(index="docs", top_k=3)
    async def search(query: str) -> list[str]:
        await asyncio.sleep(0)
        return [query]

    @rag.parse()
    def broken() -> None:
        raise ValueError("unreadable pdf")

    assert asyncio.run(search("q")) == ["q"]
    with pytest.raises(ValueError, match="unreadable"):
        broken()
    retrieve, parse = sdk.finished()
    assert retrieve.name == "retrieval" and retrieve.attributes["gen_ai.retrieval.top_k"] == 3
    assert parse.status.status_code is StatusCode.ERROR and parse.attributes["error.type"] == "ValueError"
    assert _metric(sdk, "rag.stage.duration", **{"rag.stage": "parse", "error.type": "ValueError"})
    done = {record.getMessage(): vars(record) for record in caplog.records}
    failed = done["parse.done"]  # the failure is on the log line too: `otel-rag logs --level error` shows it
    assert failed["levelname"] == "ERROR"
    assert (failed["error.type"], failed["exception.message"]) == ("ValueError", "unreadable pdf")
    assert done["retrieve.done"]["levelname"] == "INFO" and "error.type" not in done["retrieve.done"]


@pytest.mark.parametrize(
    ("mode", "on_span"), [("NO_CONTENT", False), ("SPAN_ONLY", True), ("true", True), ("EVENT_ONLY", False)]
)
def test_content_capture_follows_the_setting(
    sdk: CapturedTelemetry, use_settings: Any, mode: str, on_span: bool
) -> None:
    use_settings(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=mode)
    with rag.generate(model="gpt-4o") as generate:
        generate.content("prompt", "What is our refund policy?")
        generate.content("completion", "Refunds within 30 days.")
    attributes = sdk.finished()[-1].attributes
    assert attributes["rag.prompt.size"] == len("What is our refund policy?")
    assert len(attributes["rag.completion.sha256"]) == 16
    text = json.dumps(dict(attributes))
    assert ("refund policy" in text) is on_span
    assert ("gen_ai.input.messages" in attributes) is on_span


def test_groundedness() -> None:
    contexts = ["Refunds are accepted within 30 days of purchase with a receipt.", "Shipping takes 5 business days."]
    grounded = groundedness("Refunds are accepted within 30 days. Shipping takes 5 business days.", contexts)
    assert grounded.score == 1.0 and grounded.sentences == 2
    drifting = groundedness("Refunds are accepted within 30 days. The moon is made of cheese.", contexts)
    assert drifting.score == 0.5 and drifting.unsupported == ("The moon is made of cheese.",)
    assert groundedness("", contexts).score == 1.0


def test_record_quality_on_the_current_span_and_on_a_past_trace(sdk: CapturedTelemetry, logged: Any) -> None:
    with trace_span("answer") as span:
        record_quality(groundedness=0.5, faithfulness=0.9, hallucinated=True)
    (answer,) = sdk.finished()
    events = [e for e in answer.events if e.name == "gen_ai.evaluation.result"]
    by_name = {e.attributes["gen_ai.evaluation.name"]: e.attributes for e in events}
    assert by_name["groundedness"]["gen_ai.evaluation.score.value"] == 0.5
    assert by_name["hallucination"]["gen_ai.evaluation.score.label"] == "hallucinated"
    past_trace = format(span.get_span_context().trace_id, "032x")
    answer_span = format(span.get_span_context().span_id, "016x")
    with trace_span("feedback request"):  # e.g. a feedback endpoint, later, in another trace
        record_quality(trace_id=past_trace, span_id=answer_span, user_feedback=0.75, explanation="rated 4 of 5")
        record_quality(trace_id=past_trace, answer_relevancy=0.7)  # the span unknown: on the trace alone
    events = [r for r in logged() if r.event_name == "gen_ai.evaluation.result"]
    assert all(r.body is None for r in events)  # an event: its name and its attributes
    by_name = {r.attributes["gen_ai.evaluation.name"]: r for r in events}
    assert set(by_name) >= {"groundedness", "user_feedback", "answer_relevancy"}
    assert all(format(r.trace_id, "032x") == past_trace for r in events)
    assert (by_name["groundedness"].span_id, by_name["user_feedback"].span_id) == (span.get_span_context().span_id,) * 2
    assert by_name["answer_relevancy"].span_id == 0  # never the feedback request's own span
    assert by_name["user_feedback"].attributes["gen_ai.evaluation.explanation"] == "rated 4 of 5"
    assert sum(p.value for p in _metric(sdk, "rag.hallucinations")) >= 1
    assert sum(p.value for p in _metric(sdk, "rag.answers")) >= 1
    assert _metric(sdk, "rag.quality.score", **{"gen_ai.evaluation.name": "faithfulness"})


def test_genai_instrumentation_spans_inside_a_stage_are_counted_once() -> None:
    """What opentelemetry-instrumentation-openai-v2 creates inside our generate stage: a `chat <model>` span with
    its own gen_ai.usage.*. The stage adopts the usage when it reported none; the store counts it once."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otel_rag.rag as rag_module
    from otel_rag._store.rows import SPAN_COLUMNS, Limits, span_row

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(rag_module.GenAIChildSpans())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("openai-v2-like")
    original, rag_module._tracer = rag_module._tracer, tracer
    try:
        with (
            rag.generate(model="gpt-4o-mini", provider="openai") as stage,
            tracer.start_as_current_span(
                "chat gpt-4o-mini", attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}
            ) as child,
        ):
            child.set_attributes({"gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 5})
    finally:
        rag_module._tracer = original
    assert (stage.input_tokens, stage.output_tokens) == (50, 5) and stage.cost is not None
    # Both are named `chat gpt-4o-mini` (the conventions' name); the stage is the one with rag.stage.
    spans = {
        "stage" if "rag.stage" in (span.attributes or {}) else "child": span for span in memory.get_finished_spans()
    }
    assert spans["stage"].name == spans["child"].name == "chat gpt-4o-mini"
    assert dict(spans["child"].attributes or {})["rag.parent_stage"] == "generate"
    assert "rag.parent_stage" not in dict(spans["stage"].attributes or {})
    child_row = dict(zip(SPAN_COLUMNS, span_row(spans["child"], Limits()), strict=True))
    stage_row = dict(zip(SPAN_COLUMNS, span_row(spans["stage"], Limits()), strict=True))
    counted = ("cost_usd", "input_tokens", "output_tokens")
    assert [child_row[column] for column in counted] == [None, None, None]  # not counted on the child
    assert [stage_row[column] for column in counted[1:]] == [50, 5]


def test_one_stage_object_used_by_concurrent_tasks_keeps_their_runs_apart(sdk: CapturedTelemetry) -> None:
    shared = rag.retrieve(index="docs")

    async def task(count: int, delay: float) -> None:
        with shared:
            await asyncio.sleep(delay)
            shared.results(count)  # on the shared object: reaches this task's run

    async def both() -> None:
        await asyncio.gather(task(3, 0.05), task(7, 0.01))

    asyncio.run(both())
    counts = sorted(span.attributes["rag.retrieval.result_count"] for span in sdk.finished())
    assert counts == [3, 7]
    assert "rag.retrieval.result_count" not in shared.attributes  # the definition itself is unchanged


def test_a_model_named_after_the_call_started_renames_the_span(sdk: CapturedTelemetry) -> None:
    with rag.generate(provider="openai") as generate:
        generate.set(model="gpt-4o")  # e.g. chosen by a router inside the call
    with rag.embed() as embed:
        embed.set(input_count=3)  # no model at all: the operation alone
    names = [span.name for span in sdk.finished()]
    assert names == ["chat gpt-4o", "embeddings"]
