"""Every metric instrument otel-rag records, in one place.

Names follow the OTel semantic conventions where they exist (`http.server.request.duration`); ours live under
`rag.` and `otel_rag.`. Instruments are created from the global MeterProvider through the API's proxy, so this
module can be imported before the SDK is configured.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from otel_rag._telemetry.identity import HTTP_SCHEMA_URL, VERSION

__all__ = [
    "HTTP_DURATION_BUCKETS",
    "ActiveRequests",
    "http_server_active_requests",
    "http_server_request_body_size",
    "http_server_request_duration",
    "http_server_response_body_size",
    "register_sink_gauges",
    "sink_batch_duration",
    "sink_dropped",
    "sink_exported",
    "sink_retried",
    "sink_spooled",
    "start_health_counters",
]

_meter = metrics.get_meter("otel_rag")

# The bucket boundaries the HTTP semantic conventions recommend, in seconds.
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# The stable HTTP server metrics, from their own scope (with the version and schema of the HTTP conventions).
_http_meter = metrics.get_meter("otel_rag.http", VERSION, schema_url=HTTP_SCHEMA_URL)
http_server_request_duration = _http_meter.create_histogram(
    "http.server.request.duration",
    unit="s",
    description="Duration of HTTP server requests.",
    explicit_bucket_boundaries_advisory=list(HTTP_DURATION_BUCKETS),
)


class ActiveRequests:
    """`http.server.active_requests`, counted in memory and reported at each collection.

    An asynchronous up-down counter exports the same cumulative, non-monotonic sum as the synchronous one the stock
    instrumentation uses, but a request costs two integer updates instead of two SDK measurements (each with
    attribute hashing and an exemplar offer, about a tenth of the middleware's own time).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # requests may be served on more than one thread (several event loops)
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, method: str, scheme: str, delta: int) -> None:
        key = (method, scheme)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + delta

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = list(self._counts.items())
        return [
            Observation(count, {"http.request.method": method, "url.scheme": scheme})
            for (method, scheme), count in counts
        ]


http_server_active_requests = ActiveRequests()
_http_meter.create_observable_up_down_counter(
    "http.server.active_requests",
    [http_server_active_requests.observe],
    unit="{request}",
    description="Number of active HTTP server requests.",
)
http_server_request_body_size = _http_meter.create_histogram(
    "http.server.request.body.size", unit="By", description="Size of HTTP server request bodies (Content-Length)."
)
http_server_response_body_size = _http_meter.create_histogram(
    "http.server.response.body.size", unit="By", description="Size of HTTP server response bodies (Content-Length)."
)

# -- the Postgres sink's own health ------------------------------------------------------------------------------

sink_exported = _meter.create_counter(
    "otel_rag.sink.exported", unit="{record}", description="Records written to the Postgres store, by signal."
)
sink_retried = _meter.create_counter(
    "otel_rag.sink.retried", unit="{batch}", description="Batches retried because Postgres was unavailable."
)
sink_spooled = _meter.create_counter(
    "otel_rag.sink.spooled", unit="{record}", description="Records moved to the local spool while Postgres was away."
)
sink_dropped = _meter.create_counter(
    "otel_rag.sink.dropped",
    unit="{record}",
    description="Records not stored, by reason: spool_full, spool_unwritable, spool_corrupted, poison (set aside in "
    "poison.jsonl: refused by Postgres, time outside the partition window, not convertible), queue_full, shutdown.",
)
sink_batch_duration = _meter.create_histogram(
    "otel_rag.sink.batch.duration", unit="s", description="Time to write one batch into Postgres."
)


def register_sink_gauges(queued: Callable[[], int], spooled_bytes: Callable[[], int]) -> None:
    """Observable gauges for the sink's buffers; the callbacks are read at each metric collection."""

    def observe_queued(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(queued())]

    def observe_spool(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(spooled_bytes())]

    _meter.create_observable_gauge(
        "otel_rag.sink.queued", [observe_queued], unit="{record}", description="Records waiting in memory."
    )
    _meter.create_observable_gauge(
        "otel_rag.sink.spool.size", [observe_spool], unit="By", description="Bytes waiting in the local spool."
    )


# -- RAG stages, GenAI calls, quality ----------------------------------------------------------------------------

# Bucket boundaries the GenAI semantic conventions recommend.
_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
_OPERATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]

rag_stage_duration = _meter.create_histogram(
    "rag.stage.duration",
    unit="s",
    description="Duration of one RAG stage (upload, parse, chunk, embed, retrieve, rerank, generate), by stage.",
    explicit_bucket_boundaries_advisory=_OPERATION_BUCKETS,
)
gen_ai_token_usage = _meter.create_histogram(
    "gen_ai.client.token.usage",
    unit="{token}",
    description="Tokens used per GenAI call, by gen_ai.token.type (input, output).",
    explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
)
gen_ai_operation_duration = _meter.create_histogram(
    "gen_ai.client.operation.duration",
    unit="s",
    description="Duration of GenAI calls (chat, embeddings).",
    explicit_bucket_boundaries_advisory=_OPERATION_BUCKETS,
)
rag_cost = _meter.create_counter(
    "rag.cost", unit="{USD}", description="Cost of GenAI calls in US dollars, by model and stage."
)
rag_documents = _meter.create_counter("rag.documents", unit="{document}", description="Documents ingested.")
rag_chunks = _meter.create_counter("rag.chunks", unit="{chunk}", description="Chunks created.")
rag_retrieval_results = _meter.create_histogram(
    "rag.retrieval.results",
    unit="{result}",
    description="Results returned by one retrieval.",
    explicit_bucket_boundaries_advisory=[0, 1, 2, 3, 5, 10, 20, 50, 100],
)
rag_retrieval_empty = _meter.create_counter(
    "rag.retrieval.empty", unit="{retrieval}", description="Retrievals that found nothing."
)
rag_answers = _meter.create_counter(
    "rag.answers", unit="{answer}", description="Answers evaluated for hallucination (the rate's denominator)."
)
rag_hallucinations = _meter.create_counter(
    "rag.hallucinations", unit="{answer}", description="Answers judged hallucinated (the rate's numerator)."
)
rag_quality_score = _meter.create_histogram(
    "rag.quality.score",
    unit="1",
    description="Quality scores from 0 to 1, by gen_ai.evaluation.name (groundedness, faithfulness, ...).",
    explicit_bucket_boundaries_advisory=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
)


# -- the LangSmith mirror -----------------------------------------------------------------------------------------

langsmith_mirrored = _meter.create_counter(
    "otel_rag.langsmith.mirrored", unit="{run}", description="Runs sent to LangSmith."
)
langsmith_failed = _meter.create_counter(
    "otel_rag.langsmith.failed", unit="{run}", description="Runs LangSmith did not accept (down, refusing)."
)
langsmith_dropped = _meter.create_counter(
    "otel_rag.langsmith.dropped",
    unit="{trace}",
    description="Traces not mirrored, by reason: queue_full (LangSmith too slow or down), open_traces (too many or "
    "too old traces still in flight).",
)


def start_health_counters(*, sink: bool, langsmith: bool) -> None:
    """Put the pipeline's problem counters at zero once the MeterProvider exists.

    A counter that first appears at 1 is invisible to `increase()` and `rate()`, so an alert on the first drop
    would miss it; a series that exists at 0 also lets dashboards show "no problems" rather than "no data".
    """
    if sink:
        for reason in ("spool_full", "spool_unwritable", "spool_corrupted", "poison", "queue_full", "shutdown"):
            sink_dropped.add(0, {"reason": reason})
        sink_spooled.add(0)
        sink_retried.add(0)
    if langsmith:
        langsmith_failed.add(0)
        for reason in ("queue_full", "open_traces"):
            langsmith_dropped.add(0, {"reason": reason})
