"""Our direct OTLP span encoder produces exactly what the stock encoder produces, for every span shape."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as stock_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from otel_rag._telemetry.otlp import encode_spans


def _spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    providers = [
        TracerProvider(resource=Resource.create({"service.name": name, "deployment.environment": "t"}))
        for name in ("a", "b")
    ]
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(memory))
    remote = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "x1"), ("other", "y")]),
    )
    for index, provider in enumerate(providers):
        tracer = provider.get_tracer(f"scope{index}", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.26.0")
        other_tracer = provider.get_tracer("plain")
        for kind in SpanKind:
            with tracer.start_as_current_span(
                f"op-{kind.name}-é✓",
                kind=kind,
                context=set_span_in_context(NonRecordingSpan(remote)),
                attributes={
                    "str": "value",
                    "empty": "",
                    "int": 42,
                    "negative": -7,
                    "big": 2**62,
                    "float": 3.25,
                    "bool": True,
                    "false": False,
                    "strings": ["a", "b"],
                    "ints": [1, -2, 3],
                    "floats": [0.5],
                    "bools": [True, False],
                },
                links=[Link(remote, {"link.attr": "l"})],
            ) as span:
                span.add_event("evt", {"k": "v", "n": 1})
                span.add_event("bare")
                with other_tracer.start_as_current_span("child") as child:
                    child.set_status(Status(StatusCode.ERROR, "it broke"))
                    child.record_exception(ValueError("bad"))
                span.set_status(Status(StatusCode.OK))
    return list(memory.get_finished_spans())


def _decode_ours(data: bytes) -> ExportTraceServiceRequest:
    """Ours, minus the one field the stock encoder leaves out: a link's trace_state (trace.proto field 3)."""
    request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(data)
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                for link in span.links:
                    assert link.trace_state == "vendor=x1,other=y"
                    link.ClearField("trace_state")
    return request


def test_fast_encoder_matches_stock_encoder() -> None:
    spans = _spans()
    ours = _decode_ours(encode_spans(spans))
    stock = ExportTraceServiceRequest.FromString(stock_encode(spans).SerializeToString())
    assert len(stock.resource_spans) == 2
    assert ours == stock


def test_each_span_alone_matches() -> None:
    for span in _spans():
        ours = _decode_ours(encode_spans([span]))
        stock = ExportTraceServiceRequest.FromString(stock_encode([span]).SerializeToString())
        assert ours == stock, span.name


def test_empty_batch() -> None:
    assert encode_spans([]) == b""


# -- generated spans of every shape, compared with the stock encoder (hypothesis) ------------------------------

EDGE_CHARACTERS = ["\ud800", "\udfff", "\x00", "\U0001f600", "\u202e", "\ufeff", "é", "\n"]
TEXT = st.lists(st.one_of(st.characters(), st.sampled_from(EDGE_CHARACTERS)), max_size=12).map("".join)
SCALARS = st.one_of(
    TEXT,
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=8),
)
VALUES = st.recursive(
    st.one_of(SCALARS, st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)
ATTRIBUTES = st.dictionaries(TEXT, VALUES, max_size=5)
IDS = st.integers(min_value=1, max_value=2**64 - 1)
TIMES = st.integers(min_value=0, max_value=2**64 - 1)
RESOURCES = [Resource({"service.name": "a"}), Resource({"service.name": "b", "x": [1, 2]}, "https://s/1")]
SCOPES = [
    InstrumentationScope("scope", "1.0", "https://opentelemetry.io/schemas/1.26.0", {"k": "v"}),
    InstrumentationScope("other\ud800"),
    None,
]


@st.composite
def span_contexts(draw: st.DrawFn) -> SpanContext:
    state = draw(
        st.lists(st.tuples(st.sampled_from(["vendor", "other", "k1"]), st.sampled_from(["x1", "y"])), max_size=2)
    )
    return SpanContext(
        trace_id=draw(st.integers(min_value=1, max_value=2**128 - 1)),
        span_id=draw(IDS),
        is_remote=draw(st.booleans()),
        trace_flags=TraceFlags(draw(st.sampled_from([0, 1]))),
        trace_state=TraceState(list(dict(state).items())),
    )


@st.composite
def generated_spans(draw: st.DrawFn) -> ReadableSpan:
    status = draw(st.sampled_from(list(StatusCode)))
    description = draw(st.one_of(st.none(), TEXT)) if status is StatusCode.ERROR else None
    return ReadableSpan(
        name=draw(TEXT),
        context=draw(span_contexts()),
        parent=draw(st.one_of(st.none(), span_contexts())),
        resource=draw(st.sampled_from(RESOURCES)),
        attributes=draw(ATTRIBUTES),
        events=draw(st.lists(st.builds(Event, TEXT, ATTRIBUTES, TIMES), max_size=2)),
        links=draw(st.lists(st.builds(Link, span_contexts(), ATTRIBUTES), max_size=2)),
        kind=draw(st.sampled_from(list(SpanKind))),
        status=Status(status, description),
        start_time=draw(TIMES),
        end_time=draw(TIMES),
        instrumentation_scope=draw(st.sampled_from(SCOPES)),
    )


def _repaired(text: str | None) -> str | None:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace") if text else text


def _with_repaired_text(span: ReadableSpan) -> ReadableSpan:
    """The span as ours sends it: names and descriptions with lone surrogates made U+FFFD (stock gives up on the
    whole batch there); attributes untouched (both encoders drop the ones they cannot carry)."""
    scope = span.instrumentation_scope
    if scope is not None:
        scope = InstrumentationScope(
            _repaired(scope.name) or "", _repaired(scope.version), scope.schema_url, scope.attributes
        )
    return ReadableSpan(
        name=_repaired(span.name) or "",
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=[Event(_repaired(e.name) or "", e.attributes, e.timestamp) for e in span.events],
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code, _repaired(span.status.description)),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=scope,
    )


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # examples: the profile (conftest)
@given(st.lists(generated_spans(), min_size=1, max_size=4))
def test_generated_spans_decode_to_what_the_stock_encoder_produces(spans: list[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))  # valid protobuf, or this raises
    stock = ExportTraceServiceRequest.FromString(
        stock_encode([_with_repaired_text(span) for span in spans]).SerializePartialToString()
    )
    for resource_spans in ours.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                for link in span.links:
                    link.ClearField("trace_state")  # ours keeps a link's trace_state; stock leaves it out
    assert ours.SerializeToString(deterministic=True) == stock.SerializeToString(deterministic=True)


def test_an_attribute_otlp_cannot_carry_is_dropped_alone() -> None:
    span = ReadableSpan(
        name="bad \udc80 name",
        context=SpanContext(trace_id=1, span_id=2, is_remote=False),
        attributes={"ok": "fine", "surrogate": "half \udc80", "huge": 2**64, "key \ud800": 1, "obj": object()},  # type: ignore[dict-item]
    )
    decoded = ExportTraceServiceRequest.FromString(encode_spans([span]))
    encoded = decoded.resource_spans[0].scope_spans[0].spans[0]
    assert encoded.name == "bad \ufffd name"
    assert [(kv.key, kv.value.string_value) for kv in encoded.attributes] == [("ok", "fine")]


def test_the_exporter_splits_a_batch_over_its_max_request_size_and_keeps_its_metrics(otlp: Any) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_rag._telemetry.otlp import FastOTLPSpanExporter

    reader = InMemoryMetricReader()
    os.environ["OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"] = "true"
    try:
        exporter = FastOTLPSpanExporter(
            endpoint=otlp.endpoint + "/v1/traces", max_request_size=4000, meter_provider=MeterProvider([reader])
        )
    finally:
        del os.environ["OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"]
    spans = [
        ReadableSpan(
            name=f"s{index}",
            context=SpanContext(trace_id=index + 1, span_id=index + 1, is_remote=False),
            attributes={"payload": "x" * 300},
        )
        for index in range(40)
    ]
    huge = ReadableSpan(
        name="huge", context=SpanContext(trace_id=99, span_id=99, is_remote=False), attributes={"p": "y" * 10_000}
    )
    result = exporter.export([*spans, huge])
    assert result.name == "FAILURE"  # one span could not go; the other 40 did
    otlp.wait_for(lambda r: len(r.spans) >= 40)
    assert sorted(span["name"] for span in otlp.spans) == sorted(f"s{index}" for index in range(40))
    assert otlp.requests > 1
    data: Any = reader.get_metrics_data()
    points = {
        tuple(sorted(point.attributes.items())): point.value
        for metric in data.resource_metrics[0].scope_metrics[0].metrics
        if metric.name == "otel.sdk.exporter.span.exported"
        for point in metric.data.data_points
    }
    assert sum(points.values()) == 41
    assert any(("error.type", "RequestPayloadTooLargeError") in key and value == 1 for key, value in points.items())
