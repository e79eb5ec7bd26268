"""Our direct OTLP span encoder produces exactly what the stock encoder produces, for every span shape."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as stock_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
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

from otel_rag.otlp import encode_spans


def _spans() -> list:
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
    request = ExportTraceServiceRequest.FromString(data)
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
