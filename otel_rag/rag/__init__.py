"""RAG stage helpers: one consistently named, measured and costed span per stage.

    with rag.parse(document_id=doc.id, size=len(data)) as stage:
        pages = parse(data)
        stage.set(pages=len(pages))

    with rag.generate(model="gpt-4o-mini", provider="openai") as stage:
        reply = client.chat.completions.create(...)
        stage.usage(reply.usage.prompt_tokens, reply.usage.completion_tokens)

Stages: upload, parse, chunk, embed, retrieve, rerank, generate. Each is a context manager and a decorator (sync or
async) that opens a span carrying `rag.stage`, the OTel GenAI attributes where they exist (`gen_ai.operation.name`,
`gen_ai.request.*`, `gen_ai.response.*`, `gen_ai.provider.name`, `gen_ai.usage.*`, `gen_ai.data_source.id`) and
`rag.*` for the rest. The GenAI stages are named and kinded as the GenAI conventions say: `chat {model}` and
`embeddings {model}` (CLIENT: a call to a model service) and `retrieval` (INTERNAL); the others `rag.<stage>`.
At the end it records `rag.stage.duration`, the GenAI token and duration histograms, document/chunk/retrieval
counts, and the cost (`rag.cost_usd` on the span, from pricing.py: absent, not zero, for an unknown model), and
logs one `<stage>.done` event inside the span with the same figures. Text (prompts, completions, chunks) is recorded
only as OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT allows; otherwise its size and a hash.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

import orjson
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import Span, SpanKind

from otel_rag._config.settings import Settings, active_settings
from otel_rag._telemetry import metrics
from otel_rag._telemetry.tracing import (
    attribute_value,
    decorate,
    mark_error,
    peek_in_context,
    pop_in_context,
    push_in_context,
)
from otel_rag.rag._pricing import cost_usd

__all__ = [
    "GenAIChildSpans",
    "Stage",
    "capture_mode",
    "chunk",
    "embed",
    "generate",
    "parse",
    "rerank",
    "retrieve",
    "upload",
]

P = ParamSpec("P")
R = TypeVar("R")

_tracer = trace.get_tracer("otel_rag.rag")
_log = logging.getLogger("otel_rag.rag")

# Keyword arguments of the helpers -> attribute names (anything else becomes rag.<name>).
_ATTRIBUTE_NAMES = {
    "document_id": "rag.document.id",
    "filename": "rag.document.name",
    "size": "rag.document.size",
    "mime_type": "rag.document.mime_type",
    "pages": "rag.document.pages",
    "chunk_count": "rag.chunk.count",
    "chunk_size": "rag.chunk.size",
    "chunk_overlap": "rag.chunk.overlap",
    "top_k": "gen_ai.retrieval.top_k",
    "result_count": "rag.retrieval.result_count",
    "best_score": "rag.retrieval.best_score",
    "reranker": "rag.rerank.model",
    "index": "gen_ai.data_source.id",
    "model": "gen_ai.request.model",
    "provider": "gen_ai.provider.name",
    "dimensions": "gen_ai.embeddings.dimension.count",
    "input_count": "rag.embed.input_count",
    # the request's parameters and the response, as the GenAI conventions name them
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "seed": "gen_ai.request.seed",
    "stop_sequences": "gen_ai.request.stop_sequences",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "response_model": "gen_ai.response.model",
    "response_id": "gen_ai.response.id",
    "finish_reasons": "gen_ai.response.finish_reasons",
    "server_address": "server.address",
    "server_port": "server.port",
}
# Where a keyword means something else in one stage: a reranker's top_k is not a retrieval's.
_STAGE_ATTRIBUTE_NAMES = {("rerank", "top_k"): "rag.rerank.top_k"}
# The GenAI operations (gen_ai.operation.name); reranking is not one the conventions define, so it has none.
_ERROR_MESSAGE_CHARS = 300
_OPERATIONS = {"embed": "embeddings", "generate": "chat", "retrieve": "retrieval"}
# Span name: the operation, then the attribute the conventions add to it when known.
_NAMED_BY = {"embed": "gen_ai.request.model", "generate": "gen_ai.request.model"}
_CLIENT_STAGES = frozenset({"embed", "generate"})  # calls to a model service
# Attributes of the GenAI metrics, when the stage knows them (the conventions' recommended set).
_GENAI_METRIC_KEYS = (
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.provider.name",
    "gen_ai.response.model",
    "server.address",
    "server.port",
)


PARENT_STAGE = "rag.parent_stage"
_open_stages: dict[int, Stage] = {}  # span id -> the Stage in progress (for GenAI spans created inside it)


def capture_mode(settings: Settings | None = None) -> tuple[bool, bool]:
    """(on spans, as log events) per OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT."""
    mode = (settings or active_settings()).capture_content
    return mode in ("span_only", "span_and_event", "true"), mode in ("event_only", "span_and_event", "true")


_INVALID = object()


def _token_count(value: Any) -> Any:
    """A token count as an int (None stays None), or _INVALID for anything that is not a whole number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _INVALID
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return _INVALID
    return int(value) if 0 <= value < 2**63 else _INVALID


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


class Stage:
    """A RAG stage: its name and attributes. Each `with` block (or decorated call) runs a fresh copy, returned by
    `__enter__`, that holds that run's span, usage and cost, so one Stage object entered by several tasks at once
    keeps their runs apart. Calling `set()`/`usage()`/... on the original object inside its `with` block reaches
    the run of the current task or thread."""

    def __init__(self, stage: str, **attributes: Any) -> None:
        self.stage = stage
        self.attributes: dict[str, Any] = {"rag.stage": stage}
        if stage in _OPERATIONS:
            self.attributes["gen_ai.operation.name"] = _OPERATIONS[stage]
        self._merge(attributes)
        self.span: Span | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cost: float | None = None
        self._started = 0.0
        self._manager: Any = None

    @property
    def name(self) -> str:
        """The span name: `{operation} {model}` for the model calls, the operation for retrieval, else rag.<stage>."""
        operation = _OPERATIONS.get(self.stage)
        if operation is None:
            return f"rag.{self.stage}"
        detail = self.attributes.get(_NAMED_BY.get(self.stage, ""))
        return f"{operation} {detail}" if detail else operation

    def _merge(self, attributes: dict[str, Any]) -> dict[str, Any]:
        named = {
            _STAGE_ATTRIBUTE_NAMES.get((self.stage, key))
            or _ATTRIBUTE_NAMES.get(key, key if "." in key else f"rag.{key}"): attribute_value(value)
            for key, value in attributes.items()
            if value is not None
        }
        self.attributes.update(named)
        return named

    def _run(self) -> Stage:
        """The run of this stage open in the current context, or the stage itself outside its `with` block."""
        run = peek_in_context(self)
        return run if run is not None else self

    # -- what the stage reports ------------------------------------------------------------------------------------

    def set(self, **attributes: Any) -> Stage:
        """Add attributes (same names as the helpers' keyword arguments), e.g. `stage.set(pages=12)`."""
        run = self._run()
        name = run.name
        named = run._merge(attributes)
        if run.span is not None:
            run.span.set_attributes(named)
            if run.name != name:  # the model was named after the call started
                run.span.update_name(run.name)
        return run

    def usage(self, input_tokens: int | None = None, output_tokens: int | None = None) -> Stage:
        """Token usage of the call; sets the cost when the model has a price. Counts that are not whole numbers
        are left out with a warning (this never raises into the request)."""
        run = self._run()
        counts = [_token_count(value) for value in (input_tokens, output_tokens)]
        if any(count is _INVALID for count in counts):
            _log.warning(
                "rag.%s: token counts must be whole numbers, got %r and %r", run.stage, input_tokens, output_tokens
            )
            return run
        run.input_tokens, run.output_tokens = cast(list[int | None], counts)
        usage = {"gen_ai.usage.input_tokens": run.input_tokens, "gen_ai.usage.output_tokens": run.output_tokens}
        run.set(**{k: v for k, v in usage.items() if v is not None})
        run.cost = cost_usd(run.attributes.get("gen_ai.request.model"), run.input_tokens, run.output_tokens)
        if run.cost is not None:
            run.set(**{"rag.cost_usd": round(run.cost, 12)})
        return run

    def results(self, count: int, best_score: float | None = None) -> Stage:
        """What a retrieval or rerank returned."""
        return self.set(result_count=count, best_score=best_score)

    def content(self, role: str, text: str) -> Stage:
        """Prompt, completion or chunk text: recorded only as the capture setting allows, else size and hash."""
        run = self._run()
        text = text if isinstance(text, str) else str(text)
        on_span, as_event = capture_mode()
        run.set(**{f"rag.{role}.size": len(text), f"rag.{role}.sha256": _digest(text)})
        if on_span:
            key = "gen_ai.output.messages" if role == "completion" else "gen_ai.input.messages"
            speaker = "assistant" if role == "completion" else "user"
            message = {"role": speaker, "parts": [{"type": "text", "content": text}]}
            run.set(**{key: orjson.dumps([message]).decode("utf-8", "replace")})
        if as_event:
            _log.info(f"{run.stage}.{role}", extra={"content": text, "rag.stage": run.stage})
        return run

    # -- lifecycle --------------------------------------------------------------------------------------------------

    def __enter__(self) -> Stage:
        run = Stage(self.stage)
        run.attributes = dict(self.attributes)
        run._manager = _tracer.start_as_current_span(
            run.name,
            kind=SpanKind.CLIENT if self.stage in _CLIENT_STAGES else SpanKind.INTERNAL,
            attributes=run.attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        run.span = run._manager.__enter__()
        _open_stages[run.span.get_span_context().span_id] = run
        push_in_context(self, run)
        run._started = time.perf_counter()
        return run

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        run = pop_in_context(self)
        if run is None:  # exited without being entered in this context
            return
        seconds = time.perf_counter() - run._started
        error_type = mark_error(run.span, exc) if exc is not None and run.span is not None else None
        try:
            run._record(seconds, error_type, str(exc) if error_type else None)
        finally:
            if run.span is not None:
                _open_stages.pop(run.span.get_span_context().span_id, None)
            run._manager.__exit__(exc_type, exc, tb)

    def _record(self, seconds: float, error_type: str | None, error_message: str | None = None) -> None:
        common: dict[str, Any] = {"rag.stage": self.stage}
        if error_type:
            common["error.type"] = error_type
        metrics.rag_stage_duration.record(seconds, common)
        genai: dict[str, Any] = {key: self.attributes[key] for key in _GENAI_METRIC_KEYS if key in self.attributes}
        if self.stage in ("embed", "generate"):
            metrics.gen_ai_operation_duration.record(
                seconds, genai | ({"error.type": error_type} if error_type else {})
            )
        for token_type, tokens in (("input", self.input_tokens), ("output", self.output_tokens)):
            if tokens is not None:
                metrics.gen_ai_token_usage.record(tokens, genai | {"gen_ai.token.type": token_type})
        if self.cost is not None:
            metrics.rag_cost.add(self.cost, {"rag.stage": self.stage, **genai})
        if self.stage == "upload" and not error_type:
            metrics.rag_documents.add(1)
        if self.stage == "chunk" and "rag.chunk.count" in self.attributes:
            metrics.rag_chunks.add(int(self.attributes["rag.chunk.count"]))
        if self.stage in ("retrieve", "rerank") and "rag.retrieval.result_count" in self.attributes:
            count = int(self.attributes["rag.retrieval.result_count"])
            metrics.rag_retrieval_results.record(count, common)
            if count == 0 and self.stage == "retrieve":
                metrics.rag_retrieval_empty.add(1)
        summary = {
            key: value
            for key, value in self.attributes.items()
            if key.startswith(("rag.", "gen_ai.")) and not key.endswith((".sha256", ".messages"))
        }
        summary["rag.duration_ms"] = round(seconds * 1000, 3)
        if error_type:  # what failed, on the line itself: `otel-rag logs --level error` shows it without the span
            summary["error.type"] = error_type
            summary["exception.message"] = (error_message or "")[:_ERROR_MESSAGE_CHARS]
        _log.log(logging.ERROR if error_type else logging.INFO, f"{self.stage}.done", extra=summary)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Use as a decorator: each call is a run of this stage, with the attributes given so far."""
        return decorate(func, lambda: self)


class GenAIChildSpans(SpanProcessor):
    """Makes instrumentation spans inside a stage (e.g. opentelemetry-instrumentation-openai-v2's `chat gpt-4o`)
    part of it without counting their tokens twice.

    A span started under an open stage gets `rag.parent_stage`; the store promotes tokens and cost only from the
    stage, and a stage that reported no usage itself adopts its child's `gen_ai.usage.*` when the child ends.
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not _open_stages:
            return  # no stage open in the process (every HTTP server span outside a stage): nothing to adopt
        attributes = getattr(span, "attributes", None) or {}
        if "rag.stage" in attributes or "gen_ai.operation.name" not in attributes:
            return  # our own nested stages count for themselves; only GenAI instrumentation spans are adopted
        parent = trace.get_current_span(parent_context).get_span_context()
        stage = _open_stages.get(parent.span_id) if parent.is_valid else None
        if stage is not None:
            span.set_attribute(PARENT_STAGE, stage.stage)

    def on_end(self, span: ReadableSpan) -> None:
        if not _open_stages:
            return
        attributes = span.attributes or {}
        if PARENT_STAGE not in attributes or span.parent is None:
            return
        stage = _open_stages.get(span.parent.span_id)
        inputs = attributes.get("gen_ai.usage.input_tokens")
        outputs = attributes.get("gen_ai.usage.output_tokens")
        if stage is not None and stage.input_tokens is None and stage.output_tokens is None and (inputs or outputs):
            stage.usage(cast(int | None, inputs), cast(int | None, outputs))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def upload(**attributes: Any) -> Stage:
    """The API layer of an ingestion: document_id, filename, size, mime_type."""
    return Stage("upload", **attributes)


def parse(**attributes: Any) -> Stage:
    """Text extraction: document_id, pages, size."""
    return Stage("parse", **attributes)


def chunk(**attributes: Any) -> Stage:
    """Splitting: chunk_size, chunk_overlap, then `.set(chunk_count=...)`."""
    return Stage("chunk", **attributes)


def embed(**attributes: Any) -> Stage:
    """Embedding (enrichment): model, provider, input_count, dimensions, then `.usage(input_tokens)`."""
    return Stage("embed", **attributes)


def retrieve(**attributes: Any) -> Stage:
    """Search: index (gen_ai.data_source.id), top_k (gen_ai.retrieval.top_k), then `.results(count, best_score)`."""
    return Stage("retrieve", **attributes)


def rerank(**attributes: Any) -> Stage:
    """Reranking: reranker, top_k, then `.results(count, best_score)`."""
    return Stage("rerank", **attributes)


def generate(**attributes: Any) -> Stage:
    """The LLM call: model, provider and the request's parameters (temperature, max_tokens, top_p, seed, ...,
    server_address, server_port), then `.usage(input_tokens, output_tokens)`, `.content(...)` and the response
    (`.set(response_model=..., response_id=..., finish_reasons=[...])`)."""
    return Stage("generate", **attributes)
