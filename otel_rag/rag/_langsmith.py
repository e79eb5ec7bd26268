"""Mirror the RAG spans of each trace to LangSmith as one nested run tree.

Design. LangSmith's own OTel path (`langsmith.integrations.otel`) forwards raw OTLP and leaves the shape of the runs
to the server. We build the runs ourselves and send them through `langsmith.Client` (multipart ingest, batch as the
fallback, which the SDK applies itself), so each trace becomes the tree a LangSmith user expects:

- which spans: the ones carrying `rag.stage` (our stage helpers) or `gen_ai.operation.name` (GenAI instrumentation),
  under the trace's local root (the HTTP server span) as a `chain` run; a trace without RAG spans is not mirrored.
  A mirrored span's parent run is its nearest mirrored ancestor, so helper spans in between do not break the tree.
- ids: a run's id is `langsmith_run_id_from_otel_span_id(span_id)`, the mapping LangSmith itself applies to OTel
  spans, so a span's run URL is known at once; the LangSmith trace id is the root run's id, and `dotted_order` is
  built from start times and run ids, parent first.
- run types: upload/chain, parse/parser, chunk/tool, embed/embedding, retrieve and rerank/retriever,
  generate/llm; token usage (and our cost) in `outputs.usage_metadata`; `ls_provider` and `ls_model_name` in the
  metadata so LangSmith can price runs itself; the OTel trace id, user and service too.
- content follows OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: prompts and completions are sent only when
  they were recorded on the span; attributes are redacted before anything leaves.
- sampling (`OTEL_RAG_LANGSMITH_SAMPLE_RATIO`) is decided from the trace id, so a trace is mirrored whole or not.
- nothing here blocks the application or does I/O on its threads: span hooks only note parent links; when a
  trace's root span ends, its spans go to a bounded queue, and one daemon thread (with instrumentation suppressed,
  so its HTTP calls make no spans) builds the runs, sends them and resolves the project link. When LangSmith is
  slow or down the queue drops the oldest traces; traces in flight are bounded by count and age. Failures and drops
  are counted (`otel_rag.langsmith.*` metrics).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import random
import threading
import time
import uuid
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import Span

from otel_rag._config.settings import Settings
from otel_rag._telemetry import metrics
from otel_rag._telemetry.redaction import Redactor
from otel_rag._telemetry.tracing import request_user_box, without_instrumentation

__all__ = ["LangSmithMirror", "langsmith_url", "mirror_from_settings", "run_id"]

_logger = logging.getLogger("otel_rag.langsmith")
_RUN_TYPES = {
    "upload": "chain",
    "parse": "parser",
    "chunk": "tool",
    "embed": "embedding",
    "retrieve": "retriever",
    "rerank": "retriever",
    "generate": "llm",
    "chat": "llm",
    "text_completion": "llm",
    "embeddings": "embedding",
}
# GenAI attributes that are a run's inputs in LangSmith's terms (what the retrieval was asked).
_RUN_INPUTS = {"gen_ai.data_source.id": "data_source", "gen_ai.retrieval.top_k": "top_k"}
_MAX_QUEUED_TRACES = 1000
_MAX_OPEN_TRACES = 10_000  # traces whose root has not ended yet
_MAX_TRACE_AGE_S = 600.0  # a trace still open after this long is given up (its root will never end here)
_LINK_RETRY_S = 30.0
# A send waits this long for more traces to join it (up to _SEND_TRACES): most of a send's cost is the request
# itself (the SDK's session and multipart encoding), so a busy service sends a few large requests, not one per trace.
_LINGER_S = 0.2
_SEND_TRACES = 50
_active: LangSmithMirror | None = None


def run_id(span_id: int) -> uuid.UUID:
    """The LangSmith run id of an OTel span id (LangSmith's own mapping: the 8 bytes right-aligned in 16)."""
    from langsmith.integrations.otel import langsmith_run_id_from_otel_span_id

    return langsmith_run_id_from_otel_span_id(span_id)


def _stamp(nanoseconds: int) -> str:
    return dt.datetime.fromtimestamp(nanoseconds / 1e9, dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _iso(nanoseconds: int) -> str:
    return dt.datetime.fromtimestamp(nanoseconds / 1e9, dt.UTC).isoformat()


def _mirrored(attributes: Any) -> bool:
    return "rag.stage" in attributes or "gen_ai.operation.name" in attributes


class _Trace:
    """What we know of one trace in flight: parent links of all its spans, and its finished mirrored spans."""

    __slots__ = ("parents", "spans", "started")

    def __init__(self) -> None:
        self.parents: dict[int, int | None] = {}
        self.spans: list[ReadableSpan] = []
        self.started = time.monotonic()


class LangSmithMirror(SpanProcessor):
    def __init__(
        self,
        client: Any,
        *,
        project: str = "default",
        sample_ratio: float = 1.0,
        redactor: Redactor | None = None,
        capture_content: bool = False,
        ingest_errors: list[Exception] | None = None,
    ) -> None:
        self.client = client
        # Filled by the LangSmith client's tracing_error_callback (see mirror_from_settings).
        self.ingest_errors: list[Exception] = ingest_errors if ingest_errors is not None else []
        self._last_failure = ""
        self._flushing = 0
        self.project = project
        self.sample_ratio = sample_ratio
        self.redactor = redactor or Redactor()
        self.capture_content = capture_content
        self._traces: dict[int, _Trace] = {}  # oldest first (insertion order), bounded by count and age
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[_Trace, ReadableSpan]] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._sending = False
        self._url_prefix: str | None = None
        self._next_link_attempt = 0.0
        run_id(1)  # import LangSmith's id mapping now, not on the first request
        self._thread = threading.Thread(
            target=without_instrumentation(self._send_loop), name="otel-rag-langsmith", daemon=True
        )
        self._thread.start()

    # -- which traces --------------------------------------------------------------------------------------------

    def sampled(self, trace_id: int) -> bool:
        """Trace-id based: the same decision for every span of a trace, in every process."""
        return (trace_id & 0xFFFFFFFFFFFFFFFF) < self.sample_ratio * 2**64

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        context = span.get_span_context()
        if not self.sampled(context.trace_id):
            return
        parent = getattr(span, "parent", None)
        local_parent = parent.span_id if parent is not None and not parent.is_remote else None
        with self._lock:
            trace = self._traces.get(context.trace_id)
            if trace is None:
                trace = self._traces[context.trace_id] = self._new_trace()
            trace.parents[context.span_id] = local_parent
        attributes = getattr(span, "attributes", None) or {}
        if "rag.stage" in attributes:
            self._link_root(context.trace_id)

    def _new_trace(self) -> _Trace:
        """Room for one more trace in flight: the oldest go when there are too many or they are too old."""
        now = time.monotonic()
        given_up = 0
        while self._traces:
            oldest = next(iter(self._traces.values()))
            if len(self._traces) < _MAX_OPEN_TRACES and now - oldest.started < _MAX_TRACE_AGE_S:
                break
            del self._traces[next(iter(self._traces))]
            given_up += 1
        if given_up:
            metrics.langsmith_dropped.add(given_up, {"reason": "open_traces"})
        return _Trace()

    def _link_root(self, trace_id: int) -> None:
        """Put `rag.langsmith.url` on the request's root span while it is still open (when the link is known)."""
        box = request_user_box.get()
        root = box.root_span if box is not None else None
        if root is None or not root.is_recording() or root.get_span_context().trace_id != trace_id:
            return
        url = self.url_for(root.get_span_context().span_id)
        if url:
            root.set_attribute("rag.langsmith.url", url)

    def url_for(self, root_span_id: int) -> str | None:
        """The run URL of a root span, once the sender thread has resolved the project link; never does I/O."""
        prefix = self._url_prefix
        if prefix is None:
            return None
        root = run_id(root_span_id)
        return f"{prefix}{root}?trace_id={root}"

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not self.sampled(context.trace_id):
            return
        with self._lock:
            trace = self._traces.get(context.trace_id)
            if trace is None:
                return
            is_root = trace.parents.get(context.span_id) is None
            if is_root or _mirrored(span.attributes or {}):
                trace.spans.append(span)
            if not is_root:
                return
            del self._traces[context.trace_id]
        if any(_mirrored(finished.attributes or {}) for finished in trace.spans):
            self._enqueue(trace, span)  # the runs are built on the sender thread

    # -- spans to runs -------------------------------------------------------------------------------------------

    def _runs(self, trace: _Trace, root: ReadableSpan) -> list[dict[str, Any]]:
        if not any(_mirrored(span.attributes or {}) for span in trace.spans):
            return []  # plain HTTP traffic is not LangSmith's business
        mirrored = {span.context.span_id: span for span in trace.spans if span.context is not None}
        root_id = root.context.span_id
        orders: dict[int, str] = {}

        def parent_of(span_id: int) -> int | None:
            parent = trace.parents.get(span_id)
            while parent is not None and parent not in mirrored:
                parent = trace.parents.get(parent)
            return parent

        def order(span_id: int) -> str:
            if span_id not in orders:
                span = mirrored[span_id]
                own = f"{_stamp(span.start_time or 0)}{run_id(span_id)}"
                parent = parent_of(span_id) if span_id != root_id else None
                orders[span_id] = f"{order(parent)}.{own}" if parent is not None else own
            return orders[span_id]

        runs = []
        for span_id, span in mirrored.items():
            parent = parent_of(span_id) if span_id != root_id else None
            runs.append(self._run(span, trace_root=root_id, parent=parent, dotted_order=order(span_id)))
        return runs

    def _run(self, span: ReadableSpan, trace_root: int, parent: int | None, dotted_order: str) -> dict[str, Any]:
        plain: dict[str, Any] = dict(span.attributes or {})
        attributes: dict[str, Any] = self.redactor.scrub_mapping(plain) or plain
        scrub = self.redactor.scrub_text
        stage = attributes.get("rag.stage") or attributes.get("gen_ai.operation.name")
        inputs: dict[str, Any] = {}
        outputs: dict[str, Any] = {}
        invocation_params: dict[str, Any] = {}  # the model call's parameters, where LangSmith shows them
        for key, value in attributes.items():
            if key in ("gen_ai.input.messages", "gen_ai.output.messages"):
                if self.capture_content:
                    (inputs if key.startswith("gen_ai.input") else outputs)["messages"] = value
            elif key in _RUN_INPUTS:
                inputs[_RUN_INPUTS[key]] = value
            elif key.startswith("gen_ai.request.") and key != "gen_ai.request.model":
                invocation_params[key.removeprefix("gen_ai.request.")] = value
            elif key.startswith("rag.") and key not in ("rag.stage", "rag.cost_usd"):
                (outputs if "count" in key or "score" in key else inputs)[key.removeprefix("rag.")] = value
        input_tokens = attributes.get("gen_ai.usage.input_tokens")
        output_tokens = attributes.get("gen_ai.usage.output_tokens")
        if input_tokens is not None or output_tokens is not None:
            usage: dict[str, Any] = {"input_tokens": int(input_tokens or 0), "output_tokens": int(output_tokens or 0)}
            usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
            if "rag.cost_usd" in attributes:
                usage["total_cost"] = attributes["rag.cost_usd"]
            outputs["usage_metadata"] = usage
        metadata = {
            "otel_trace_id": format(span.context.trace_id, "032x"),
            "otel_span_id": format(span.context.span_id, "016x"),
            "service": (span.resource.attributes.get("service.name") if span.resource else None),
            "user_id": attributes.get("enduser.id"),
            "ls_provider": attributes.get("gen_ai.provider.name") or attributes.get("gen_ai.system"),
            "ls_model_name": attributes.get("gen_ai.request.model"),
        }
        run: dict[str, Any] = {
            "id": str(run_id(span.context.span_id)),
            "trace_id": str(run_id(trace_root)),
            "dotted_order": dotted_order,
            "name": scrub(span.name),
            "run_type": _RUN_TYPES.get(str(stage), "chain") if stage else "chain",
            "start_time": _iso(span.start_time or 0),
            "end_time": _iso(span.end_time or span.start_time or 0),
            "inputs": inputs,
            "outputs": outputs,
            "extra": {
                "metadata": {k: v for k, v in metadata.items() if v is not None},
                **({"invocation_params": invocation_params} if invocation_params else {}),
            },
            "session_name": self.project,
        }
        if parent is not None:
            run["parent_run_id"] = str(run_id(parent))
        if span.status.status_code.name == "ERROR":
            run["error"] = scrub(span.status.description or "error")
        return run

    # -- sending -------------------------------------------------------------------------------------------------

    def _enqueue(self, trace: _Trace, root: ReadableSpan) -> None:
        with self._wake:
            if len(self._queue) >= _MAX_QUEUED_TRACES:
                self._queue.popleft()
                metrics.langsmith_dropped.add(1, {"reason": "queue_full"})
            self._queue.append((trace, root))
            self._wake.notify()

    def _send_loop(self) -> None:
        failures = 0
        while True:
            self._resolve_link()
            with self._wake:
                while not self._queue and not self._stopping:
                    link_due = None if self._url_prefix is not None else self._next_link_attempt - time.monotonic()
                    if link_due is not None and link_due <= 0:
                        break
                    self._wake.wait(link_due)  # idle: until a trace arrives, a stop, or the next link attempt
                if not self._queue and self._stopping:
                    return
                self._linger()
                taken = [self._queue.popleft() for _ in range(min(len(self._queue), _SEND_TRACES))]
                self._sending = bool(taken)
            sent = True
            try:
                runs = [run for trace, root in taken for run in self._runs(trace, root)]
                if runs:
                    sent = self._send(runs)
            except Exception:  # a run that cannot be built must not stop the mirror
                _logger.exception("building LangSmith runs failed")
            finally:
                self._sending = False
            failures = 0 if sent else failures + 1
            if failures:
                self._back_off(failures)

    def _linger(self) -> None:
        """With the lock held: let more traces join this send, unless it is full or a flush or stop waits on it."""
        deadline = time.monotonic() + _LINGER_S
        while len(self._queue) < _SEND_TRACES and not self._stopping and not self._flushing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)

    def _back_off(self, failures: int) -> None:
        """After a failed send, wait before the next: a dead LangSmith costs no CPU. Traces keep queueing
        meanwhile (the oldest dropped past the bound); a flush or a stop cuts the wait short."""
        with self._wake:
            self._wake.wait_for(lambda: self._stopping or self._flushing > 0, timeout=retry_delay(failures))

    def _resolve_link(self) -> None:
        """Look up the project's URL prefix (tenant and project id), on this thread, retried while it fails."""
        if self._url_prefix is not None or time.monotonic() < self._next_link_attempt:
            return
        self._next_link_attempt = time.monotonic() + _LINK_RETRY_S
        try:
            project = self.client.read_project(project_name=self.project)
            self._url_prefix = f"{self.client._host_url}/o/{project.tenant_id}/projects/p/{project.id}/r/"
        except Exception as error:
            _logger.debug("LangSmith project link not resolved yet: %s", error)

    def _send(self, runs: list[dict[str, Any]]) -> bool:
        """Hand runs to LangSmith; True when it took them. The SDK reports failures through its error callback
        (it does not raise for most of them), which fills `ingest_errors`. Runs LangSmith did not take are not
        sent again (they are counted); the next send waits out a growing pause."""
        self.ingest_errors.clear()
        try:
            self.client.multipart_ingest(create=runs)  # the SDK falls back to /runs/batch itself on a 404
            if self.ingest_errors:
                raise self.ingest_errors[0]
        except Exception as error:  # LangSmith down or refusing: count it, never disturb the application
            metrics.langsmith_failed.add(len(runs))
            text = " ".join(str(error).split())[:300]
            if text != self._last_failure:
                self._last_failure = text
                _logger.warning(
                    "mirroring %d runs to LangSmith failed (counted in otel_rag.langsmith.failed; sends pause and "
                    "resume with a growing backoff): %s",
                    len(runs),
                    text,
                )
            return False
        metrics.langsmith_mirrored.add(len(runs))
        self._last_failure = ""
        return True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until the queued traces have been handed to LangSmith (sent, or counted as failed)."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._wake:
            self._flushing += 1
            self._wake.notify_all()
        try:
            while self._queue or self._sending:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.02)
            return True
        finally:
            with self._wake:
                self._flushing -= 1

    def shutdown(self) -> None:
        self.force_flush(5_000)
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(5)


def langsmith_url(trace_id: str, root_span_id: int | None = None) -> str | None:
    """The LangSmith URL of a mirrored trace's root run, or None when not mirrored (or the link is not known yet).

    `root_span_id` is the root span's id (as an int). Sampled-out traces have no URL. Never does I/O: the project
    link is resolved by the mirror's own thread.
    """
    mirror = _active
    if mirror is None or root_span_id is None or not mirror.sampled(int(trace_id, 16)):
        return None
    return mirror.url_for(root_span_id)


def retry_delay(failures: int) -> float:
    """Seconds to wait after `failures` failed sends in a row: 1 s doubling to 60 s, give or take a fifth (so that
    many processes do not retry in step)."""
    return min(2.0 ** (failures - 1), 60.0) * random.uniform(0.8, 1.2)  # noqa: S311


def mirror_from_settings(settings: Settings, redactor: Redactor) -> LangSmithMirror | None:
    """The mirror when LANGSMITH_API_KEY is set (or OTEL_RAG_LANGSMITH=true), else None."""
    global _active
    if not settings.langsmith_enabled:
        return None
    from langsmith import Client

    from otel_rag.rag import capture_mode

    errors: list[Exception] = []  # the client reports failed sends here rather than raising
    client = Client(
        api_url=settings.langsmith_endpoint,
        api_key=settings.langsmith_api_key,
        auto_batch_tracing=False,
        tracing_error_callback=errors.append,
    )
    _active = LangSmithMirror(
        client,
        project=settings.langsmith_project,
        sample_ratio=settings.langsmith_sample_ratio,
        redactor=redactor,
        capture_content=capture_mode(settings)[0],
        ingest_errors=errors,
    )
    return _active
