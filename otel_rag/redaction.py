"""Secret and PII scrubbing, applied before any record leaves the process.

One `Redactor` serves every signal: the log pipeline calls it on each event dict (before the line is written or
bridged into OTel), and `RedactingSpanExporter` calls it on span attributes and event attributes in the export
thread, so the request path pays nothing for spans. A key that names a secret has its whole value replaced; any
string value is scanned for secret-looking substrings (bearer tokens, API keys, passwords in URLs) and for the
configured PII patterns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

REDACTED = "[REDACTED]"

_SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "auth_header",
    "cookie",
    "set-cookie",
    "dsn",
    "credential",
    "private_key",
    "session_key",
    "access_key",
)
# Keys that contain a secret-looking part but are safe and useful (token counts are everywhere in GenAI).
_SAFE_KEYS = re.compile(r"tokens$|token_count$|usage", re.I)

# (name, pattern): the name says how much of the match to keep when masking.
_SECRET_VALUES = (
    ("bearer", r"\b(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"),
    ("whole", r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}"),
    ("whole", r"\blsv2_[a-z]{2}_[A-Za-z0-9_]{16,}"),
    ("whole", r"\bAKIA[0-9A-Z]{16}\b"),
    ("whole", r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    ("whole", r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    ("userinfo", r"(?<=://)[^:/@\s]+:[^@\s/]+(?=@)"),
    ("param", r"(?<=[?&;\s])(?i:password|passwd|api_key|apikey|token|secret|access_token)=[^&\s;]+"),
)


# Every secret pattern above contains one of these substrings; checking them (fast C substring scans) spares
# the full regular expression, which costs microseconds per string, on the vast majority of values.
def _may_hold_secret(text: str) -> bool:
    return (  # unrolled: this runs for every string value of every record
        "=" in text
        or "://" in text
        or "sk-" in text
        or "eyJ" in text
        or "AKIA" in text
        or "lsv2_" in text
        or "hp_" in text
        or "ho_" in text
        or "hu_" in text
        or "hs_" in text
        or "hr_" in text
        or "earer" in text
        or "EARER" in text
    )


def _alternation() -> re.Pattern[str]:
    seen: dict[str, int] = {}
    parts = []
    for name, pattern in _SECRET_VALUES:
        seen[name] = seen.get(name, 0) + 1
        parts.append(f"(?P<{name}_{seen[name]}>{pattern})")
    return re.compile("|".join(parts))


class Redactor:
    """Replaces secrets and PII in keys/values; cheap when there is nothing to replace."""

    def __init__(self, extra_keys: Iterable[str] = (), extra_patterns: Sequence[re.Pattern[str]] = ()) -> None:
        self._key_parts = tuple(part.lower() for part in (*_SECRET_KEY_PARTS, *extra_keys))
        self._value_pattern = _alternation()
        self._pii_patterns = tuple(extra_patterns)
        self._key_cache: dict[str, bool] = {}

    def is_secret_key(self, key: str) -> bool:
        cached = self._key_cache.get(key)
        if cached is None:
            lowered = key.lower()
            cached = not _SAFE_KEYS.search(lowered) and any(part in lowered for part in self._key_parts)
            if len(self._key_cache) < 10_000:
                self._key_cache[key] = cached
        return cached

    def scrub_text(self, text: str) -> str:
        """Mask secret-looking substrings and PII inside free text."""
        if _may_hold_secret(text) and self._value_pattern.search(text):
            text = self._value_pattern.sub(_mask_match, text)
        for pattern in self._pii_patterns:
            text = pattern.sub(REDACTED, text)
        return text

    def scrub_value(self, key: str, value: Any) -> Any:
        if self.is_secret_key(key):
            return REDACTED
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, (list, tuple)):
            return type(value)(self.scrub_text(v) if isinstance(v, str) else v for v in value)
        return value

    def scrub_mapping(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        """A scrubbed copy, or None when nothing needed scrubbing (so callers can keep the original)."""
        changed: dict[str, Any] | None = None
        for key, value in data.items():
            new = self.scrub_value(key, value)
            if new is not value and new != value:
                if changed is None:
                    changed = dict(data)
                changed[key] = new
        return changed


def _mask_match(match: re.Match[str]) -> str:
    kind = (match.lastgroup or "whole").rsplit("_", 1)[0]
    text = match.group(0)
    if kind == "bearer":
        return "Bearer " + REDACTED
    if kind == "userinfo":  # user:password in a URL keeps the user
        return text.split(":", 1)[0] + ":" + REDACTED
    if kind == "param":
        return text.split("=", 1)[0] + "=" + REDACTED
    return REDACTED


class RedactingSpanExporter(SpanExporter):
    """Wraps an exporter; spans carrying secrets are copied with those values replaced."""

    def __init__(self, exporter: SpanExporter, redactor: Redactor) -> None:
        self._exporter = exporter
        self._redactor = redactor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([redact_span(span, self._redactor) for span in spans])

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._exporter.shutdown()


def redact_span(span: ReadableSpan, redactor: Redactor) -> ReadableSpan:
    """The span itself when it holds no secret, else a copy with the secrets replaced."""
    attributes = redactor.scrub_mapping(span.attributes or {})
    events = [_redact_event(event, redactor) for event in span.events]
    if attributes is None and all(new is old for new, old in zip(events, span.events, strict=True)):
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes if attributes is not None else span.attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _redact_event(event: Event, redactor: Redactor) -> Event:
    attributes = redactor.scrub_mapping(event.attributes or {})
    if attributes is None:
        return event
    return Event(event.name, attributes, event.timestamp)
