"""A fast OTLP/HTTP span exporter: the stock exporter with a direct protobuf encoder.

Why: the stock encoder builds a protobuf object per span, attribute and value before serialising; on a busy
service that costs about 55 us per span, more than creating the span itself, and it runs on the same cores as the
application. This module writes the same wire format straight into bytes (several times faster; see
bench/http_profile.py). Everything else (endpoint, headers, compression, timeouts, TLS, its own metrics) is the stock
`OTLPSpanExporter`, which this subclasses.

The stock guarantees, kept: an attribute that cannot be encoded (a lone surrogate, an int beyond int64, a type OTLP
has no value for) is dropped alone, as the stock encoder drops it. Better than stock: a span or event name or a
status description with a lone surrogate has it replaced by U+FFFD (stock fails the whole batch), a link keeps its
trace_state (stock leaves it out), and a batch over the exporter's max request size is split rather than dropped.
Tests (tests/test_otlp_encoder.py) decode our bytes with the official protobuf classes and compare them with the
stock encoder's for generated spans of every shape (hypothesis).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http._common import RequestPayloadTooLargeError, _is_request_too_large
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import SpanContext

from otel_rag._telemetry.sdk_fields import inner_dict, span_attributes

__all__ = ["FastOTLPSpanExporter", "encode_spans"]

_logger = logging.getLogger("otel_rag.otlp")

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_SMALL = [bytes([i]) for i in range(128)]
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_FLAGS_HAS_IS_REMOTE = 0x100
_FLAGS_IS_REMOTE = 0x200


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64  # int64 as two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


# Tags used below, computed once.
_T = {(f, w): _tag(f, w) for f in range(1, 17) for w in (_VARINT, _I64, _LEN, _I32)}


def _len_field(field: int, payload: bytes) -> bytes:
    return _T[field, _LEN] + _varint(len(payload)) + payload


def _text(value: str) -> bytes:
    """UTF-8 of a name or description; surrogates (not valid in a protobuf string) are repaired: a high-low pair
    becomes the character it stands for, a lone one U+FFFD."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def _str_field(field: int, value: str | None) -> bytes:
    return _len_field(field, _text(value)) if value else b""


def _int64(value: int) -> bytes:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"Value out of range: {value}")  # what protobuf says; the attribute is dropped
    return _T[3, _VARINT] + _varint(value)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# AnyValue fields: 1 string, 2 bool, 3 int64, 4 double, 5 ArrayValue, 6 KeyValueList, 7 bytes. Attribute strings
# are encoded strictly: one with a lone surrogate raises here and its attribute is dropped, as in the stock encoder.
_SCALAR_VALUES: dict[type, Any] = {
    str: lambda v: _len_field(1, v.encode("utf-8")),
    bool: lambda v: _T[2, _VARINT] + _SMALL[int(v)],
    int: _int64,
    float: lambda v: _T[4, _I64] + _pack_double(v),
    bytes: lambda v: _len_field(7, v),
}


def _any_value(value: Any) -> bytes:
    encode = _SCALAR_VALUES.get(type(value))
    if encode is not None:
        return bytes(encode(value))
    if value is None:
        return b""
    if isinstance(value, Mapping):
        return _len_field(6, b"".join(_len_field(1, _key_value(str(k), v)) for k, v in value.items()))
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return _len_field(5, b"".join(_len_field(1, _any_value(item)) for item in value))
    for kind, encode in _SCALAR_VALUES.items():  # subclasses (IntEnum, str enums...)
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return bytes(encode(value))
    raise TypeError(f"Invalid type {type(value).__name__} of value")


def _key_value(key: str, value: Any) -> bytes:
    return (_len_field(1, key.encode("utf-8")) if key else b"") + _len_field(2, _any_value(value))


_warned_keys: set[str] = set()
# Encoded attributes by (field, key, type, value), for the short values that repeat from span to span (methods,
# routes, status codes, model names): one dict lookup instead of encoding. Bounded; cleared when full.
_attribute_cache: dict[tuple[int, str, type, Any], bytes] = {}
_CACHE_LIMIT = 8192
_CACHED_TYPES = (str, int, bool)


def _attributes(field: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    items = inner_dict(attributes).items()
    parts = []
    cache = _attribute_cache
    for key, value in items:
        kind = type(value)
        cacheable = kind in _CACHED_TYPES and (kind is not str or len(value) <= 64)
        if cacheable:
            encoded = cache.get((field, key, kind, value))
            if encoded is not None:
                parts.append(encoded)
                continue
        try:
            encoded = _len_field(field, _key_value(key, value))
        except (TypeError, ValueError) as error:  # dropped alone, as the stock encoder drops it
            if len(_warned_keys) < 100 and key not in _warned_keys:
                _warned_keys.add(key)
                _logger.warning("dropping an attribute OTLP cannot carry (%s): %s", type(error).__name__, error)
            continue
        if cacheable:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[field, key, kind, value] = encoded
        parts.append(encoded)
    return b"".join(parts)


def _count(field: int, value: int | None) -> bytes:
    return _T[field, _VARINT] + _varint(value) if value else b""


def _flags(parent: SpanContext | None) -> int:
    if parent is not None and parent.is_remote:
        return _FLAGS_HAS_IS_REMOTE | _FLAGS_IS_REMOTE
    return _FLAGS_HAS_IS_REMOTE


def _trace_state(context: SpanContext) -> str:
    state = context.trace_state
    return ",".join(f"{key}={value}" for key, value in state.items()) if state else ""


def _span(span: ReadableSpan) -> bytes:
    context = span.context
    assert context is not None
    parent = span.parent
    parts = [
        _T[1, _LEN] + b"\x10" + context.trace_id.to_bytes(16, "big"),
        _T[2, _LEN] + b"\x08" + context.span_id.to_bytes(8, "big"),
        _str_field(3, _trace_state(context)),
        (_T[4, _LEN] + b"\x08" + parent.span_id.to_bytes(8, "big")) if parent is not None else b"",
        _str_field(5, span.name),
        _count(6, span.kind.value + 1),  # SDK INTERNAL=0..CONSUMER=4; OTLP UNSPECIFIED=0, INTERNAL=1...
        _T[7, _I64] + _pack_fixed64(span.start_time or 0),
        _T[8, _I64] + _pack_fixed64(span.end_time or 0),
        _attributes(9, span_attributes(span)),
        _count(10, span.dropped_attributes),
    ]
    for event in span.events:
        event_bytes = (
            _T[1, _I64]
            + _pack_fixed64(event.timestamp or 0)
            + _str_field(2, event.name)
            + _attributes(3, event.attributes)
            + _count(4, event.dropped_attributes)
        )
        parts.append(_len_field(11, event_bytes))
    parts.append(_count(12, span.dropped_events))
    for link in span.links:
        link_bytes = (
            _T[1, _LEN]
            + b"\x10"
            + link.context.trace_id.to_bytes(16, "big")
            + _T[2, _LEN]
            + b"\x08"
            + link.context.span_id.to_bytes(8, "big")
            + _str_field(3, _trace_state(link.context))
            + _attributes(4, link.attributes)
            + _count(5, link.dropped_attributes)
            + _T[6, _I32]
            + _pack_fixed32(_flags(link.context))
        )
        parts.append(_len_field(13, link_bytes))
    parts.append(_count(14, span.dropped_links))
    status = span.status
    parts.append(_len_field(15, _str_field(2, status.description) + _count(3, status.status_code.value)))
    parts.append(_T[16, _I32] + _pack_fixed32(_flags(parent)))
    return b"".join(parts)


def _resource(resource: Resource) -> bytes:
    return _attributes(1, resource.attributes)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    return _str_field(1, scope.name) + _str_field(2, scope.version) + _attributes(3, scope.attributes)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """An ExportTraceServiceRequest, serialised, grouping spans by resource and instrumentation scope: equal ones
    together, as the stock encoder does, each distinct object compared once per batch (hashing a Resource
    serialises its attributes, so the per-span lookups go by object identity)."""
    groups: dict[int, tuple[Resource, dict[int, tuple[InstrumentationScope | None, list[bytes]]]]] = {}
    resource_group: dict[int, int] = {}
    scope_group: dict[tuple[int, int], int] = {}
    for span in spans:
        group_id = resource_group.get(id(span.resource))
        if group_id is None:
            same = next((known for known, _ in groups.values() if known == span.resource), span.resource)
            group_id = resource_group[id(span.resource)] = id(same)
            groups.setdefault(group_id, (same, {}))
        scopes = groups[group_id][1]
        key = (group_id, id(span.instrumentation_scope))
        scope_id = scope_group.get(key)
        if scope_id is None:
            scope = span.instrumentation_scope or None
            same_scope = next((known for known, _ in scopes.values() if known == scope), scope)
            scope_id = scope_group[key] = id(same_scope)
            scopes.setdefault(scope_id, (same_scope, []))
        scopes[scope_id][1].append(_len_field(2, _span(span)))
    body = []
    for resource, scopes in groups.values():
        scope_spans = [
            _len_field(
                2,
                _len_field(1, _scope(scope))
                + b"".join(encoded)
                + _str_field(3, scope.schema_url if scope is not None else None),
            )
            for scope, encoded in scopes.values()
        ]
        resource_spans = _len_field(1, _resource(resource)) + b"".join(scope_spans) + _str_field(3, resource.schema_url)
        body.append(_len_field(1, resource_spans))
    return b"".join(body)


class FastOTLPSpanExporter(OTLPSpanExporter):
    """`OTLPSpanExporter` (OTLP over HTTP, protobuf) with the direct encoder above; keeps the stock exporter's own
    metrics (OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED) and splits a batch larger than its max request size."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        exported = True
        for part in self._parts(list(spans)):
            exported = self._send(part) and exported
        return SpanExportResult.SUCCESS if exported else SpanExportResult.FAILURE

    def _parts(self, spans: list[ReadableSpan]) -> Iterator[tuple[list[ReadableSpan], bytes | None]]:
        """(spans, encoded request) pieces within the max request size, halving as needed; a span too large on
        its own comes with None (it is counted as failed, the rest still go)."""
        try:
            data = encode_spans(spans)
        except Exception as error:  # nothing the SDK hands us should get here; if it does, fail this batch only
            _logger.error("Failed to encode span batch: %s", error)
            yield spans, None
            return
        if not spans or not _is_request_too_large(data, self._max_request_size):
            yield spans, data
        elif len(spans) == 1:
            _logger.warning(
                "Dropping a span: serialized size %d bytes exceeds max_request_size %d bytes.",
                len(data),
                self._max_request_size,
            )
            yield spans, None
        else:
            middle = len(spans) // 2
            yield from self._parts(spans[:middle])
            yield from self._parts(spans[middle:])

    def _send(self, part: tuple[list[ReadableSpan], bytes | None]) -> bool:
        spans, data = part
        with self._metrics.export_operation(len(spans)) as result:
            if data is None:
                result.error = RequestPayloadTooLargeError("a span exceeds max_request_size")
                return False
            export_result = self._client.export(data)
            if not export_result.success:
                result.error = export_result.error
                if export_result.status_code is not None:
                    result.error_attrs = {HTTP_RESPONSE_STATUS_CODE: export_result.status_code}
                return False
        return True
