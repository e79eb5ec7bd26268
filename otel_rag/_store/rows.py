"""From OTel records to the rows of the `logs` and `spans` tables, made safe to store.

Every value is made storable here, once, so that a batch never fails on its content: NUL characters (which
PostgreSQL text and jsonb cannot hold) become U+FFFD, strings that are not valid UTF-8 are repaired, and bodies and
attribute values over the limits are cut with a visible marker. A row is a plain tuple of JSON-friendly values
(strings and numbers), so the same tuple can be copied into Postgres or written to the local spool.
"""

from __future__ import annotations

import itertools
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.trace import ReadableSpan

from otel_rag._telemetry.sdk_fields import inner_dict, span_attributes
from otel_rag._telemetry.timestamps import UtcSeconds

__all__ = ["LOG_COLUMNS", "SPAN_COLUMNS", "Limits", "log_row", "span_row"]

LOG_COLUMNS = (
    "time",
    "record_id",
    "trace_id",
    "span_id",
    "service_name",
    "user_id",
    "severity",
    "severity_number",
    "logger",
    "body",
    "attributes",
    "resource",
    "cost_usd",
    "input_tokens",
    "output_tokens",
)
# Columns are only ever appended, so a row spooled by an older version is the same row with fewer values at the end
# (the writer pads it with NULLs).
SPAN_COLUMNS = (
    "time",
    "end_time",
    "duration_ms",
    "trace_id",
    "span_id",
    "parent_span_id",
    "service_name",
    "user_id",
    "name",
    "kind",
    "status",
    "status_message",
    "scope",
    "attributes",
    "events",
    "resource",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "parent_remote",
)

# Attributes promoted to columns (a query filters or sums on them); they stay in the jsonb as well.
USER_KEYS = ("enduser.id", "user_id")
COST_KEYS = ("rag.cost_usd", "cost_usd")
INPUT_TOKENS_KEYS = ("gen_ai.usage.input_tokens", "input_tokens")
OUTPUT_TOKENS_KEYS = ("gen_ai.usage.output_tokens", "output_tokens")
_SEVERITY_NAMES = {1: "trace", 5: "debug", 9: "info", 13: "warning", 17: "error", 21: "critical"}
_KINDS = ("INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUSES = ("UNSET", "OK", "ERROR")


class Limits:
    """How much of one record we keep."""

    def __init__(self, max_body: int = 65_536, max_value: int = 16_384, max_attributes: int = 262_144) -> None:
        self.max_body = max_body
        self.max_value = max_value
        self.max_attributes = max_attributes


def clean_text(text: str, limit: int) -> str:
    """Storable text: no NUL, valid UTF-8, at most `limit` characters (with a marker saying what was cut)."""
    if len(text) <= limit and text.isascii() and "\x00" not in text:
        return text  # the common case, decided in C
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from bytes decoded with surrogateescape
        text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > limit:
        cut = len(text) - limit
        text = f"{text[:limit]}...[truncated {cut} chars]"
    return text


def _clean_scalar(value: bool | int | float | None) -> Any:
    if isinstance(value, float) and not math.isfinite(value):  # NaN and infinities are not JSON
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return str(value)
    return value


def _clean_value(value: Any, limits: Limits) -> Any:
    if isinstance(value, str):
        return clean_text(value, limits.max_value)
    if isinstance(value, bytes):
        return clean_text(value.decode("utf-8", "replace"), limits.max_value)
    if isinstance(value, (bool, int, float)) or value is None:
        return _clean_scalar(value)
    if isinstance(value, Mapping):
        return {clean_text(str(k), 256): _clean_value(v, limits) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_clean_value(v, limits) for v in value]
    return clean_text(str(value), limits.max_value)


def to_json(data: Mapping[str, Any] | Sequence[Any] | None, limits: Limits) -> str:
    """jsonb text for attributes/events/resource, within the size limit."""
    if not data:
        return "[]" if isinstance(data, Sequence) and not isinstance(data, Mapping) else "{}"
    try:  # fast path: serialisable as is, short enough that no single value can exceed its limit, no NUL
        encoded = orjson.dumps(data if isinstance(data, (dict, list)) else dict(data))
        if len(encoded) <= limits.max_value and b"\\u0000" not in encoded:
            return encoded.decode()
    except (TypeError, orjson.JSONEncodeError):
        pass
    cleaned = _clean_value(data, limits)
    text = orjson.dumps(cleaned).decode()
    if len(text) > limits.max_attributes:
        keys = list(cleaned)[:50] if isinstance(cleaned, dict) else []
        text = orjson.dumps({"otel_rag.truncated": True, "original_size": len(text), "keys": keys}).decode()
    return text


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -(2**31) <= value < 2**31:
        return None
    return int(value)


def _user(attributes: Mapping[str, Any]) -> str | None:
    for key in USER_KEYS:
        value = attributes.get(key)
        if value is not None:
            return clean_text(str(value), 256)
    return None


_utc_seconds = UtcSeconds()


def _iso(nanoseconds: int) -> str:
    """An exact timestamptz literal (microseconds, UTC) without datetime objects; one strftime per second."""
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    return f"{_utc_seconds(seconds)}.{rest // 1000:06d}+00:00"


class _RecordIds:
    """Unique record ids, UUID-shaped: 64 random bits per process (re-drawn after fork) and a 64-bit counter."""

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def next(self) -> str:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            raw = secrets.token_hex(8)
            self._prefix = f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}"
            self._counter = itertools.count()
        value = next(self._counter)
        return f"{self._prefix}-{0x8000 | (value >> 48) & 0x3FFF:04x}-{value & 0xFFFFFFFFFFFF:012x}"


_record_ids = _RecordIds()
_resource_json: dict[int, tuple[Any, str, str]] = {}


def _resource(resource: Any, limits: Limits) -> tuple[str, str]:
    """(service name, jsonb text) of a resource; resources are few and long-lived, so both are computed once."""
    cached = _resource_json.get(id(resource))
    if cached is None or cached[0] is not resource:
        attributes = dict(resource.attributes) if resource else {}
        name = clean_text(str(attributes.get("service.name", "unknown_service")), 256)
        if len(_resource_json) > 64:
            _resource_json.clear()
        cached = _resource_json[id(resource)] = (resource, name, to_json(attributes, limits))
    return cached[1], cached[2]


def _plain(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain dict of OTel attributes; copies the SDK's inner dict directly, which is many times faster."""
    return dict(inner_dict(attributes))


def _first(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in attributes:
            return attributes[key]
    return None


def log_row(record: ReadableLogRecord, limits: Limits) -> tuple[Any, ...]:
    log = record.log_record
    attributes = _plain(log.attributes)
    service, resource_json = _resource(record.resource, limits)
    timestamp = log.timestamp or log.observed_timestamp or 0
    severity_number = int(log.severity_number.value) if log.severity_number else 9
    severity = (log.severity_text or _SEVERITY_NAMES.get((severity_number - 1) // 4 * 4 + 1, "info")).lower()
    body = log.body if log.body is not None else log.event_name  # an event without a body: its name
    if body is not None and not isinstance(body, str):
        body = orjson.dumps(_clean_value(body, limits)).decode()
    scope = record.instrumentation_scope
    return (
        _iso(timestamp),
        _record_ids.next(),
        format(log.trace_id, "032x") if log.trace_id else None,
        format(log.span_id, "016x") if log.span_id else None,
        service,
        _user(attributes),
        clean_text(severity, 32),
        severity_number,
        clean_text(scope.name, 256) if scope else None,
        clean_text(body, limits.max_body) if body is not None else None,
        to_json(attributes, limits),
        resource_json,
        _number(_first(attributes, COST_KEYS)),
        _integer(_first(attributes, INPUT_TOKENS_KEYS)),
        _integer(_first(attributes, OUTPUT_TOKENS_KEYS)),
    )


def span_row(span: ReadableSpan, limits: Limits) -> tuple[Any, ...]:
    context = span.context
    assert context is not None
    attributes = dict(span_attributes(span))
    service, resource_json = _resource(span.resource, limits)
    start = span.start_time or 0
    end = span.end_time or start
    events = [
        {"name": event.name, "time": _iso(event.timestamp or start), "attributes": dict(event.attributes or {})}
        for event in span.events
    ]
    status = span.status
    # A GenAI call inside a RAG stage: the stage carries its tokens and cost, so they are counted once.
    counted = "rag.parent_stage" not in attributes
    return (
        _iso(start),
        _iso(end),
        (end - start) / 1e6,
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
        format(span.parent.span_id, "016x") if span.parent else None,
        service,
        _user(attributes),
        clean_text(span.name, 1024),
        _KINDS[span.kind.value],
        _STATUSES[status.status_code.value],
        clean_text(status.description, limits.max_value) if status.description else None,
        clean_text(span.instrumentation_scope.name, 256) if span.instrumentation_scope else None,
        to_json(attributes, limits),
        to_json(events, limits),
        resource_json,
        _number(_first(attributes, COST_KEYS)) if counted else None,
        _integer(_first(attributes, INPUT_TOKENS_KEYS)) if counted else None,
        _integer(_first(attributes, OUTPUT_TOKENS_KEYS)) if counted else None,
        bool(span.parent.is_remote) if span.parent else None,
    )
