"""`OTEL_PYTHON_LOG_CORRELATION=true`: the stock logging instrumentation's trace fields on every stdlib record.

The stock `LoggingInstrumentor` adds `otelTraceID`, `otelSpanID`, `otelTraceSampled` and `otelServiceName` to
each `logging.LogRecord` when that variable is true, so that users' own formatters and handlers (a file handler, a
third-party shipper) can print them. otel-rag replaces that instrumentor (our JSON lines carry `trace_id` and
`span_id` themselves), so it sets the same four fields, with the same values outside a span ("0", "0", False).
It does not change the log format: the JSON lines stay as they are (the stock one calls `logging.basicConfig`).
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace

__all__ = ["RECORD_FIELDS", "install_record_trace_fields"]

RECORD_FIELDS = frozenset({"otelTraceID", "otelSpanID", "otelTraceSampled", "otelServiceName"})
_installed = False


def install_record_trace_fields() -> None:
    """Wrap the stdlib record factory (once per process) so that every record carries the four fields."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()
    service_name: str | None = None

    def record_with_trace_fields(*args: Any, **kwargs: Any) -> logging.LogRecord:
        nonlocal service_name
        record = previous(*args, **kwargs)
        if service_name is None:  # read once the provider exists: the first record may come before it
            resource = getattr(trace.get_tracer_provider(), "resource", None)
            service_name = str(resource.attributes.get("service.name") or "") if resource is not None else None
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.otelTraceID = format(span_context.trace_id, "032x")
            record.otelSpanID = format(span_context.span_id, "016x")
            record.otelTraceSampled = span_context.trace_flags.sampled
        else:
            record.otelTraceID = record.otelSpanID = "0"
            record.otelTraceSampled = False
        record.otelServiceName = service_name or ""
        return record

    logging.setLogRecordFactory(record_with_trace_fields)
