"""The OpenTelemetry SDK's private fields read on hot paths, in one place, each with its public fallback.

Iterating the SDK's `BoundedAttributes` through the Mapping interface costs a Python call per key, while its inner
dict iterates at C speed; and a span's public `attributes` wraps them in a new MappingProxyType on every access.
The unit tests run against the lowest supported SDK too (`make check-lowest`), so a rename there fails a test.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["inner_dict", "span_attributes"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})  # shared, so read-only


def inner_dict(attributes: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The plain dict inside the SDK's attribute mapping, else the mapping itself (empty for None)."""
    if not attributes:
        return _EMPTY
    inner = getattr(attributes, "_dict", None)
    return inner if type(inner) is dict else attributes


def span_attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """A span's attributes for reading, without the proxy the public property builds on each access."""
    raw = getattr(span, "_attributes", _EMPTY) if type(span).attributes is ReadableSpan.attributes else span.attributes
    return inner_dict(raw)
