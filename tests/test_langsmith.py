"""The LangSmith mirror, through the real langsmith SDK, against a local server that decodes what it receives."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
from langsmith import Client
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from otel_rag import rag
from otel_rag._telemetry.tracing import begin_request, end_request
from otel_rag.rag import _langsmith
from otel_rag.rag._langsmith import LangSmithMirror, run_id
from otel_rag.testing import CapturedTelemetry
from tests.support.langsmith_server import PROJECT_ID, TENANT_ID, LangSmithStub

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`


@pytest.fixture
def stub() -> Iterator[LangSmithStub]:
    server = LangSmithStub()
    yield server
    server.close()


def _setup(url: str, **options: Any) -> tuple[TracerProvider, LangSmithMirror]:
    client = Client(api_url=url, api_key="lsv2_pt_test", auto_batch_tracing=False)
    mirror = LangSmithMirror(client, project="rag-tests", **options)
    provider = TracerProvider(resource=Resource.create({"service.name": "rag-api"}))
    provider.add_span_processor(mirror)
    return provider, mirror


@contextmanager
def _stages_on(provider: TracerProvider) -> Iterator[Tracer]:
    """The RAG stage helpers on this test's provider for the block (otel_rag.rag resolves its tracer once)."""
    import otel_rag.rag as rag_module

    original = rag_module._tracer
    tracer = provider.get_tracer("test")
    rag_module._tracer = tracer
    try:
        yield tracer
    finally:
        rag_module._tracer = original


def _wait_for_link(mirror: LangSmithMirror, timeout: float = 10.0) -> None:
    """Until the sender thread has resolved the project link (or `timeout` seconds have passed)."""
    deadline = time.monotonic() + timeout
    while mirror.url_for(1) is None and time.monotonic() < deadline:
        time.sleep(0.02)


def _request(provider: TracerProvider, user: str = "ana", secret: bool = False) -> Any:
    """A server span with the RAG stages of a query inside, plus a helper span and an HTTP client span."""
    with _stages_on(provider) as tracer, tracer.start_as_current_span("POST /query", kind=SpanKind.SERVER) as root:
        token = begin_request(user, root)
        root.set_attribute("enduser.id", user)
        with rag.retrieve(index="docs", top_k=4) as stage:
            stage.results(3, best_score=0.8)
        # The helper span is not mirrored: the stage inside it attaches to the nearest mirrored run.
        with (
            tracer.start_as_current_span("helper"),
            rag.generate(model="gpt-4o-mini", provider="openai", temperature=0) as generate,
        ):
            generate.usage(120, 30)
            if secret:
                generate.set(api_key="sk-live-abcdefghijklmnopqrstuvwxyz")
            with tracer.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.CLIENT):
                pass
        end_request(token)
    return root


def _wait(stub: LangSmithStub, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(stub.runs) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_trace_becomes_one_nested_run_tree(stub: LangSmithStub) -> None:
    provider, mirror = _setup(stub.url)
    root = _request(provider)
    assert mirror.force_flush(10_000)
    assert len(stub.runs) == 3  # a flush returns once the runs are in LangSmith, not while they are on their way
    assert any(r.startswith("POST /runs/multipart") for r in stub.requests)
    runs = {run["name"]: run for run in stub.runs.values()}
    assert set(runs) == {"POST /query", "retrieval", "chat gpt-4o-mini"}  # no helper, no HTTP client span
    root_run = runs["POST /query"]
    root_id = str(run_id(root.get_span_context().span_id))
    assert root_run["id"] == root_id and root_run["trace_id"] == root_id and "parent_run_id" not in root_run
    for name in ("retrieval", "chat gpt-4o-mini"):
        assert runs[name]["parent_run_id"] == root_id  # the helper span in between is skipped
        assert runs[name]["trace_id"] == root_id
        assert runs[name]["dotted_order"].startswith(root_run["dotted_order"] + ".")
    assert (runs["retrieval"]["run_type"], runs["chat gpt-4o-mini"]["run_type"], root_run["run_type"]) == (
        "retriever",
        "llm",
        "chain",
    )
    generate = runs["chat gpt-4o-mini"]
    usage = generate["outputs"]["usage_metadata"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (120, 30, 150)
    assert usage["total_cost"] == pytest.approx((120 * 0.15 + 30 * 0.6) / 1e6)
    metadata = generate["extra"]["metadata"]
    assert metadata["ls_provider"] == "openai" and metadata["ls_model_name"] == "gpt-4o-mini"
    assert metadata["otel_trace_id"] == format(root.get_span_context().trace_id, "032x")
    assert metadata["service"] == "rag-api"
    assert runs["retrieval"]["outputs"]["retrieval.result_count"] == 3
    assert runs["retrieval"]["inputs"] == {"data_source": "docs", "top_k": 4}
    assert generate["extra"]["invocation_params"] == {"temperature": 0.0}
    mirror.shutdown()


def test_redacted_values_never_arrive_and_errors_are_marked(stub: LangSmithStub) -> None:
    provider, mirror = _setup(stub.url)
    _request(provider, secret=True)
    with (
        _stages_on(provider) as tracer,
        tracer.start_as_current_span("POST /documents"),
        rag.parse(document_id="d-1") as stage,
    ):
        stage.span.set_status(Status(StatusCode.ERROR, "unreadable pdf"))  # type: ignore[union-attr]
    assert mirror.force_flush(10_000)
    _wait(stub, 5)
    assert "sk-live-abcdefghijklmnopqrstuvwxyz" not in str(stub.runs)
    assert any(run.get("name") == "chat gpt-4o-mini" and "[REDACTED]" in str(run) for run in stub.runs.values())
    parse = next(run for run in stub.runs.values() if run["name"] == "rag.parse")
    assert parse["error"] == "unreadable pdf" and parse["run_type"] == "parser"
    mirror.shutdown()


def test_sampling_keeps_traces_whole(stub: LangSmithStub) -> None:
    provider, mirror = _setup(stub.url, sample_ratio=0.5)
    roots = [_request(provider, user=f"u{i}") for i in range(40)]
    assert mirror.force_flush(10_000)
    time.sleep(0.5)
    mirrored = {run["trace_id"] for run in stub.runs.values()}
    expected = {
        str(run_id(r.get_span_context().span_id)) for r in roots if mirror.sampled(r.get_span_context().trace_id)
    }
    assert mirrored == expected and 5 < len(expected) < 35
    per_trace: dict[str, int] = {}
    for run in stub.runs.values():
        per_trace[run["trace_id"]] = per_trace.get(run["trace_id"], 0) + 1
    assert set(per_trace.values()) == {3}  # whole traces only
    mirror.shutdown()


def test_traces_that_end_close_together_go_in_one_request(stub: LangSmithStub, monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy service sends a few large requests (issue 16): a send waits up to _LINGER_S for more traces."""
    monkeypatch.setattr(_langsmith, "_LINGER_S", 1.0)  # room for a slow machine; 0.2 s in production
    provider, mirror = _setup(stub.url)
    _wait_for_link(mirror)
    _request(provider, user="first")
    time.sleep(0.02)  # the sender has taken the first trace and lingers
    for index in range(5):
        _request(provider, user=f"u{index}")
    _wait(stub, 6 * 3)
    posts = [r for r in stub.requests if r.startswith("POST /runs")]
    assert len(stub.runs) == 18 and len(posts) == 1, posts
    started = time.monotonic()
    _request(provider, user="alone")
    assert mirror.force_flush(10_000)  # a flush does not wait out the linger
    assert time.monotonic() - started < _langsmith._LINGER_S and len(stub.runs) == 21
    mirror.shutdown()


def test_fallback_to_batch_and_failures_never_reach_the_app() -> None:
    no_multipart = LangSmithStub(multipart=False)
    try:
        provider, mirror = _setup(no_multipart.url)
        _request(provider)
        assert mirror.force_flush(10_000)
        _wait(no_multipart, 3)
        assert any(r.startswith("POST /runs/batch") for r in no_multipart.requests)
        assert len(no_multipart.runs) == 3
        mirror.shutdown()
    finally:
        no_multipart.close()
    down = LangSmithStub(fail=True)
    try:
        provider, mirror = _setup(down.url)
        started = time.perf_counter()
        for _ in range(5):
            _request(provider)
        assert time.perf_counter() - started < 1.0  # the request path never waits for LangSmith
        mirror.force_flush(10_000)
        assert down.runs == {}
        mirror.shutdown()
    finally:
        down.close()


def test_langsmith_url_is_known_at_once(stub: LangSmithStub) -> None:
    import otel_rag.rag._langsmith as module

    provider, mirror = _setup(stub.url)
    module._active = mirror
    try:
        _wait_for_link(mirror)  # the sender thread resolves the link
        root = _request(provider)
        url = root.attributes["rag.langsmith.url"]
        root_run = run_id(root.get_span_context().span_id)
        host = mirror.client._host_url  # the SDK's web host for this API URL
        assert url == f"{host}/o/{TENANT_ID}/projects/p/{PROJECT_ID}/r/{root_run}?trace_id={root_run}"
        assert (
            module.langsmith_url(format(root.get_span_context().trace_id, "032x"), root.get_span_context().span_id)
            == url
        )
    finally:
        module._active = None
        mirror.shutdown()


def test_traces_in_flight_are_bounded_by_count_and_age(
    stub: LangSmithStub, monkeypatch: pytest.MonkeyPatch, sdk: CapturedTelemetry
) -> None:
    """Spans whose root never ends here (a root in another process, a crash) must not pile up for ever."""
    import otel_rag.rag._langsmith as module

    def given_up() -> float:
        return sdk.metric_total("otel_rag.langsmith.dropped", reason="open_traces")

    before = given_up()
    monkeypatch.setattr(module, "_MAX_OPEN_TRACES", 50)
    provider, mirror = _setup(stub.url)
    tracer = provider.get_tracer("t")
    open_roots = [tracer.start_span(f"root-{index}") for index in range(200)]  # never ended
    assert len(mirror._traces) == 50  # the newest 50; the 150 oldest were given up, and counted
    assert given_up() - before == 150
    monkeypatch.setattr(module, "_MAX_TRACE_AGE_S", 0.0)
    tracer.start_span("one more").end()
    assert len(mirror._traces) <= 1  # everything older than the age limit is given up
    assert given_up() - before == 200
    for span in open_roots:
        span.end()  # their roots end after being given up: nothing is mirrored, nothing raises
    _request(provider)  # a whole trace still goes through
    assert mirror.force_flush(10_000)
    _wait(stub, 3)
    assert len(stub.runs) == 3
    mirror.shutdown()


def _posts(stub: LangSmithStub) -> int:
    return sum(1 for request in stub.requests if request.startswith("POST"))


def test_a_failing_langsmith_is_retried_with_growing_pauses_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SDK reports most failures to its error callback instead of raising: the mirror must notice them."""
    from otel_rag._config.settings import load_settings
    from otel_rag._telemetry.redaction import Redactor
    from otel_rag.rag._langsmith import mirror_from_settings

    down = LangSmithStub(fail=True)
    try:
        settings = load_settings({"LANGSMITH_API_KEY": "lsv2_pt_test", "LANGSMITH_ENDPOINT": down.url})
        mirror = mirror_from_settings(settings, Redactor())
        assert mirror is not None
        provider = TracerProvider(resource=Resource.create({"service.name": "rag-api"}))
        provider.add_span_processor(mirror)

        def failures_said() -> int:
            return sum(1 for r in caplog.records if "mirroring" in r.getMessage() and "failed" in r.getMessage())

        deadline = time.monotonic() + 20
        while failures_said() == 0 and time.monotonic() < deadline:  # the SDK retries a 503 itself for a while
            _request(provider)
            time.sleep(0.05)
        assert failures_said() == 1
        first = _posts(down)
        started = time.monotonic()
        while time.monotonic() - started < 2.0:  # traces keep coming; the mirror now waits before sending again
            _request(provider)
            time.sleep(0.05)
        assert _posts(down) - first <= 4, down.requests  # one more try at most (its own retries included)
        assert failures_said() == 1  # the same failure is not said again
        before = _posts(down)
        assert not mirror.force_flush(300)  # a flush cuts the pause short: the queue is tried at once
        deadline = time.monotonic() + 5
        while _posts(down) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _posts(down) > before
        mirror.shutdown()
    finally:
        down.close()


def test_mirror_from_settings_follows_the_settings(stub: LangSmithStub) -> None:
    import otel_rag.rag._langsmith as module
    from otel_rag._config.settings import load_settings
    from otel_rag._telemetry.redaction import Redactor
    from otel_rag.rag._langsmith import langsmith_url, mirror_from_settings

    assert mirror_from_settings(load_settings({}), Redactor()) is None
    off = load_settings({"LANGSMITH_API_KEY": "lsv2_pt_test", "OTEL_RAG_LANGSMITH": "false"})
    assert mirror_from_settings(off, Redactor()) is None
    settings = load_settings(
        {
            "LANGSMITH_API_KEY": "lsv2_pt_test",
            "LANGSMITH_ENDPOINT": stub.url,
            "LANGSMITH_PROJECT": "rag-tests",
            "OTEL_RAG_LANGSMITH_SAMPLE_RATIO": "0.5",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY",
        }
    )
    redactor = Redactor()
    mirror = mirror_from_settings(settings, redactor)
    try:
        assert mirror is not None and module._active is mirror
        assert (mirror.project, mirror.sample_ratio, mirror.capture_content) == ("rag-tests", 0.5, True)
        assert mirror.redactor is redactor and mirror.client.api_url == stub.url
        assert mirror.client.api_key == "lsv2_pt_test"
        assert langsmith_url("0" * 32, None) is None  # no root span id
        _wait_for_link(mirror)
        sampled = next(trace for trace in range(1, 1000) if mirror.sampled(trace))
        skipped = next(trace for trace in range(1, 1000) if not mirror.sampled(trace << 63))
        assert langsmith_url(format(sampled, "032x"), 1) == mirror.url_for(1)
        assert langsmith_url(format(skipped << 63, "032x"), 1) is None  # sampled out: no URL
        module._active = None
        assert langsmith_url(format(sampled, "032x"), 1) is None  # no mirror
    finally:
        module._active = None
        if mirror is not None:
            mirror.shutdown()


def test_retry_pauses_double_from_one_second_to_a_minute_give_or_take_a_fifth() -> None:
    from otel_rag.rag._langsmith import retry_delay

    for failures, base in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)):
        delays = [retry_delay(failures) for _ in range(300)]
        assert 0.8 * base <= min(delays) < 0.85 * base and 1.15 * base < max(delays) <= 1.2 * base, failures


def test_a_pause_lasts_its_time_unless_a_flush_or_a_stop_cuts_it_short(stub: LangSmithStub) -> None:
    _, mirror = _setup(stub.url)
    try:
        started = time.monotonic()
        mirror._back_off(1)  # about a second
        assert 0.75 <= time.monotonic() - started < 2.0
        with mirror._wake:
            mirror._flushing += 1
        started = time.monotonic()
        mirror._back_off(7)  # a minute, but someone is waiting for a flush
        assert time.monotonic() - started < 0.5
        with mirror._wake:
            mirror._flushing -= 1
    finally:
        mirror.shutdown()


def test_a_full_send_queue_drops_the_oldest_traces_and_counts_them(
    stub: LangSmithStub, monkeypatch: pytest.MonkeyPatch, sdk: CapturedTelemetry
) -> None:
    """LangSmith slower than the app: the queue of finished traces stays bounded; the newest are kept."""
    import otel_rag.rag._langsmith as module

    monkeypatch.setattr(module, "_MAX_QUEUED_TRACES", 3)
    before = sdk.metric_total("otel_rag.langsmith.dropped", reason="queue_full")
    provider, mirror = _setup(stub.url)
    roots = []
    with mirror._wake:  # the sender cannot take anything meanwhile
        for user in ("u1", "u2", "u3", "u4", "u5"):
            roots.append(_request(provider, user=user))
        assert len(mirror._queue) == 3
    assert sdk.metric_total("otel_rag.langsmith.dropped", reason="queue_full") - before == 2
    assert mirror.force_flush(10_000)
    _wait(stub, 9)
    sent = {run["trace_id"] for run in stub.runs.values()}
    assert sent == {str(run_id(root.get_span_context().span_id)) for root in roots[2:]}  # the two oldest dropped
    mirror.shutdown()


# -- failures counted and said once per reason, an idle sender, which roots get a link ------------------------------


def _mirror_for(url: str) -> tuple[TracerProvider, LangSmithMirror]:
    """The mirror as the configurator builds it (the SDK's error callback wired), on its own provider."""
    from otel_rag._config.settings import load_settings
    from otel_rag._telemetry.redaction import Redactor
    from otel_rag.rag._langsmith import mirror_from_settings

    settings = load_settings({"LANGSMITH_API_KEY": "lsv2_pt_test", "LANGSMITH_ENDPOINT": url})
    mirror = mirror_from_settings(settings, Redactor())
    assert mirror is not None
    provider = TracerProvider(resource=Resource.create({"service.name": "rag-api"}))
    provider.add_span_processor(mirror)
    return provider, mirror


def test_failed_and_mirrored_runs_are_counted_and_each_new_failure_is_said_once(
    caplog: pytest.LogCaptureFixture, sdk: CapturedTelemetry
) -> None:
    import otel_rag.rag._langsmith as module

    refusing = LangSmithStub(fail=True, fail_status=422, fail_detail="refused:\n\n   " + "x" * 1000)
    provider, mirror = _mirror_for(refusing.url)
    before = {name: sdk.metric_total(f"otel_rag.langsmith.{name}") for name in ("failed", "mirrored")}

    def counted(name: str) -> float:
        return sdk.metric_total(f"otel_rag.langsmith.{name}") - before[name]

    def said() -> list[str]:
        prefix = (
            "mirroring 3 runs to LangSmith failed (counted in otel_rag.langsmith.failed; sends pause and resume with "
            "a growing backoff): "
        )
        return [r.getMessage().removeprefix(prefix) for r in caplog.records if r.getMessage().startswith(prefix)]

    try:
        caplog.set_level(logging.WARNING, logger="otel_rag.langsmith")
        module._active = None
        _request(provider)
        deadline = time.monotonic() + 5
        while not said() and time.monotonic() < deadline:  # the first failure, without a flush
            time.sleep(0.01)
        assert counted("failed") == 3 and counted("mirrored") == 0
        (text,) = said()
        assert text.startswith(f"Failed to POST {refusing.url}/runs/multipart in LangSmith API.") and "422" in text
        assert "\n" not in text and "  " not in text and len(text) == 300  # one line, cut to 300 characters
        posts = _posts(refusing)
        _request(provider)  # right after a failure: the sender pauses (about a second) before it tries again
        time.sleep(0.4)
        assert _posts(refusing) == posts
        started = time.monotonic()
        mirror.force_flush(5_000)  # a flush cuts the pause short; the same failure again: counted, not said again
        assert time.monotonic() - started < 0.3
        assert _posts(refusing) > posts and counted("failed") == 6 and len(said()) == 1
        refusing.fail = False
        _request(provider)
        assert mirror.force_flush(5_000)
        _wait(refusing, 3)
        assert counted("mirrored") == 3 and counted("failed") == 6
        refusing.fail = True
        _request(provider)
        deadline = time.monotonic() + 5
        while counted("failed") < 9 and time.monotonic() < deadline:  # without a flush: the pause follows
            time.sleep(0.01)
        assert len(said()) == 2 and counted("failed") == 9  # after a recovery the same failure is news again
        posts = _posts(refusing)
        _request(provider)  # and after this failure too the sender pauses, and a flush cuts the pause short
        time.sleep(0.4)
        assert _posts(refusing) == posts
        started = time.monotonic()
        mirror.force_flush(5_000)
        assert time.monotonic() - started < 0.3 and _posts(refusing) > posts
    finally:
        mirror.shutdown()
        refusing.close()


def test_an_idle_sender_sleeps_resolves_its_link_on_its_own_and_stops_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import otel_rag.rag._langsmith as module

    monkeypatch.setattr(module, "_LINK_RETRY_S", 0.2)
    stub = LangSmithStub(unknown_project_for=2)  # the project is found on the third lookup
    provider, mirror = _setup(stub.url)
    try:
        assert mirror._thread.name == "otel-rag-langsmith" and mirror._thread.daemon  # named; never holds the exit
        started = time.monotonic()
        assert mirror.force_flush(5_000) and time.monotonic() - started < 0.5  # nothing queued: nothing to wait for
        _wait_for_link(mirror, 5)  # no trace sent: the link still resolves
        assert mirror.url_for(1) is not None
        assert sum(1 for request in stub.requests if request.startswith("GET /sessions")) == 3
        cpu = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu < 0.1  # idle: the sender waits for work, it does not poll
        _request(provider)  # and it still sends after its idle wake-ups
        _wait(stub, 3)
        _request(provider)  # a success is followed by no pause: the next trace goes at once, no flush needed
        deadline = time.monotonic() + 0.6
        while len(stub.runs) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(stub.runs) == 6
        assert sum(1 for request in stub.requests if request.startswith("GET /sessions")) == 3  # resolved once
        started = time.monotonic()
        mirror.shutdown()
        assert not mirror._thread.is_alive() and time.monotonic() - started < 1.0
    finally:
        stub.close()


def test_only_a_trace_with_rag_spans_gets_a_langsmith_link_on_its_root(stub: LangSmithStub) -> None:
    provider, mirror = _setup(stub.url)
    try:
        _wait_for_link(mirror)
        with _stages_on(provider) as tracer:
            with tracer.start_as_current_span("GET /healthz", kind=SpanKind.SERVER) as plain:
                token = begin_request("ana", plain)
                with tracer.start_as_current_span("SELECT 1"):
                    pass
                end_request(token)
            with tracer.start_as_current_span("POST /query", kind=SpanKind.SERVER) as answered:
                token = begin_request("ana", answered)
                with rag.generate(model="gpt-4o-mini"):
                    pass
                end_request(token)
        plain_attributes, answered_attributes = (
            cast(ReadableSpan, span).attributes or {} for span in (plain, answered)
        )
        assert "rag.langsmith.url" not in plain_attributes  # nothing mirrored: a link would lead nowhere
        assert answered_attributes["rag.langsmith.url"] == mirror.url_for(answered.get_span_context().span_id)
    finally:
        mirror.shutdown()


def test_a_mirror_built_without_options_mirrors_every_trace_to_the_default_project_without_content(
    stub: LangSmithStub,
) -> None:
    mirror = LangSmithMirror(Client(api_url=stub.url, api_key="lsv2_pt_test", auto_batch_tracing=False))
    try:
        assert (mirror.project, mirror.sample_ratio, mirror.capture_content) == ("default", 1.0, False)
        assert all(mirror.sampled(trace_id) for trace_id in (1, 2**63, 2**64 - 1))
        _wait_for_link(mirror, 5)  # the link resolved: the sender sleeps
        assert mirror.force_flush(1_000)  # with nothing queued or being sent a flush returns at once
    finally:
        mirror.shutdown()


def test_a_project_that_is_never_found_is_looked_up_at_the_retry_interval_not_in_a_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import otel_rag.rag._langsmith as module

    monkeypatch.setattr(module, "_LINK_RETRY_S", 0.2)
    stub = LangSmithStub(unknown_project_for=1_000_000)
    _, mirror = _setup(stub.url)
    try:
        time.sleep(0.7)
        lookups = sum(1 for request in stub.requests if request.startswith("GET /sessions"))
        assert 2 <= lookups <= 5  # about every 0.2 s
        assert mirror.url_for(1) is None
    finally:
        mirror.shutdown()
        stub.close()


def test_a_flush_waits_for_a_slow_langsmith_to_take_the_runs() -> None:
    """The runs in flight count: a flush that returned while a send is still on its way would let a process exit
    with them lost."""
    slow = LangSmithStub(delay=0.5)
    provider, mirror = _setup(slow.url)
    try:
        _request(provider)
        assert mirror.force_flush(10_000)
        assert len(slow.runs) == 3
    finally:
        mirror.shutdown()
        slow.close()


def test_run_times_and_dotted_orders_are_langsmiths_own_in_utc_whatever_the_local_time_zone(
    stub: LangSmithStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt
    import uuid

    from langsmith.run_trees import _create_current_dotted_order  # how the SDK itself writes a dotted order

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30: local time must never leak into LangSmith's times
    time.tzset()
    try:
        provider, mirror = _setup(stub.url)
        root = _request(provider)
        assert mirror.force_flush(10_000)
        mirror.shutdown()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    root_start = dt.datetime.fromtimestamp(root.start_time / 1e9, dt.UTC)
    runs = {run["name"]: run for run in stub.runs.values()}
    root_run = runs["POST /query"]
    assert dt.datetime.fromisoformat(root_run["start_time"]) == root_start  # aware, UTC, to the microsecond
    assert dt.datetime.fromisoformat(root_run["end_time"]) == dt.datetime.fromtimestamp(root.end_time / 1e9, dt.UTC)
    assert root_run["dotted_order"] == _create_current_dotted_order(root_start, uuid.UUID(root_run["id"]))
    for run in runs.values():
        start = dt.datetime.fromisoformat(run["start_time"])
        assert start.utcoffset() == dt.timedelta(0)
        assert run["dotted_order"].endswith(_create_current_dotted_order(start, uuid.UUID(run["id"])))


def test_a_genai_instrumentation_span_inside_a_stage_is_mirrored_under_it(stub: LangSmithStub) -> None:
    """Spans of GenAI instrumentations (opentelemetry-instrumentation-openai-v2's `chat gpt-4o`) carry
    gen_ai.operation.name but no rag.stage: they are runs too."""
    provider, mirror = _setup(stub.url)
    try:
        with _stages_on(provider) as tracer, tracer.start_as_current_span("POST /query", kind=SpanKind.SERVER) as root:
            token = begin_request("ana", root)
            with rag.retrieve(index="docs", top_k=2) as stage:
                stage.results(2)
                attributes = {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3-small"}
                with tracer.start_as_current_span("embeddings text-embedding-3-small", attributes=attributes):
                    pass
            end_request(token)
        assert mirror.force_flush(10_000)
    finally:
        mirror.shutdown()
    runs = {run["name"]: run for run in stub.runs.values()}
    assert set(runs) == {"POST /query", "retrieval", "embeddings text-embedding-3-small"}
    assert runs["embeddings text-embedding-3-small"]["parent_run_id"] == runs["retrieval"]["id"]


def test_a_stage_in_another_trace_puts_no_link_on_the_requests_root(stub: LangSmithStub) -> None:
    """A request whose own trace has no stage (its work runs in a trace of its own, e.g. a background job started
    from it) must not point at a LangSmith run that will never exist."""
    from opentelemetry.context import Context

    provider, mirror = _setup(stub.url)
    try:
        _wait_for_link(mirror)
        with _stages_on(provider) as tracer, tracer.start_as_current_span("POST /jobs", kind=SpanKind.SERVER) as root:
            token = begin_request("ana", root)
            with tracer.start_as_current_span("job", context=Context()), rag.generate(model="gpt-4o-mini"):
                pass
            end_request(token)
        assert "rag.langsmith.url" not in (cast(ReadableSpan, root).attributes or {})
    finally:
        mirror.shutdown()


def test_a_pause_is_cut_short_while_any_flush_still_waits_even_after_another_gave_up() -> None:
    """Flushes from several threads (a request handler and the shutdown hook) count one by one: the first to give
    up must not leave the others waiting out a pause."""
    import threading

    slow = LangSmithStub(delay=1.0)
    provider, mirror = _setup(slow.url)
    try:
        _request(provider)  # its send takes a second
        patient = threading.Thread(target=mirror.force_flush, args=(10_000,))
        patient.start()
        time.sleep(0.1)
        assert not mirror.force_flush(100)  # this one gives up; the patient one still waits
        assert patient.is_alive()
        started = time.monotonic()
        mirror._back_off(4)  # eight seconds, unless someone is waiting for a flush
        assert time.monotonic() - started < 0.5
        patient.join(10)
    finally:
        mirror.shutdown()
        slow.close()
