"""Secret and PII scrubbing, applied before any record leaves the process.

One `Redactor` serves every signal and every sink: the log pipeline calls it on each event dict (before the line is
written or bridged into OTel), the span and log exporters' wrappers and the Postgres sink call it in their own
threads (so the request path pays nothing for spans), and the LangSmith mirror calls it on every run it builds.

What it does:
- a value under a key that names a secret (`password`, `api_key`, `authorization`, ...) is replaced whole, at any
  depth of dicts, lists and tuples; a few keys that merely contain such a word and are useful (`gen_ai.usage.*`,
  token counts) are exempt by their exact name;
- every string, wherever it is (messages, values at any depth, span names, status descriptions, event, link and
  resource attributes, exception messages and tracebacks, JSON inside strings), is scanned for secret-looking text:
  auth headers, provider keys, JWTs, private keys, passwords in URLs, `password=`/`"token": "..."`/`secret: ...`
  pairs, signed-URL parameters; and for the configured PII patterns;
- values that are neither JSON-like nor strings are turned into text first (safely: an object whose `__str__`
  raises, a circular or very deep structure become a placeholder), so what is written is what was scrubbed.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status

from otel_rag._telemetry.sdk_fields import inner_dict, span_attributes

__all__ = [
    "CIRCULAR",
    "REDACTED",
    "TOO_DEEP",
    "RedactingLogExporter",
    "RedactingSpanExporter",
    "Redactor",
    "redact_log_record",
    "redact_span",
    "safe_str",
    "scrub_resource",
]

REDACTED = "[REDACTED]"
CIRCULAR = "[circular reference]"
TOO_DEEP = "[nested too deep]"
MAX_DEPTH = 32  # levels of dicts/lists kept; deeper values become TOO_DEEP (JSON encoders stop near 255)
MAX_TEXT = 1_000_000  # longer strings are cut before scanning, so one huge value cannot stall a thread
# Short texts repeat (attribute keys, methods, routes, addresses, user agents, model names): their result is kept,
# up to this many (then the memo starts again), so a span's twenty strings cost a lookup each, not a scan.
MEMO_MAX_LEN = 128
MEMO_ENTRIES = 4096
_UNCHANGED = object()

# A key containing one of these names a secret: its whole value is replaced.
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
    "dsn",
    "credential",
    "private_key",
    "privatekey",
    "session_key",
    "access_key",
    "accountkey",
    "account_key",
    "signature",
)
# Exact keys (and one namespace) that contain such a word but hold counts, not secrets.
EXEMPT_KEYS = frozenset(
    {
        "gen_ai.request.max_tokens",
        "gen_ai.token.type",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "prompt_tokens",
        "completion_tokens",
        "max_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    }
)
EXEMPT_PREFIXES = ("gen_ai.usage.",)

# `key=value`, `key: value` and `"key": "value"` pairs inside text whose key ENDS with one of these words (so
# `tokens=5` and `token_count: 3` stay); the value is replaced, quotes and an auth scheme word are kept.
_PAIR_KEY = (
    r"(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credentials?|signature"
    r"|sig|accountkey|sharedaccesskey|session[_-]?key|authorization|cookie|dsn)"
)
_PAIR_VALUE = r"(?P<value>\\?\"[^\"]*?\\?\"|'[^']*'|(?:(?:bearer|basic|digest|token|negotiate)\s+)?[^\s&;,\"'<>]+)"
_PAIR_TAIL = r"(?:\\?[\"'])?\s*[:=]\s*" + _PAIR_VALUE
# Matched on the lower-cased text (case-sensitive matching is several times faster in `re`); the other one is for
# text whose length changes when lower-cased (some non-ASCII letters).
_PAIR_LOWER = re.compile(_PAIR_KEY + _PAIR_TAIL)
_PAIR_ANY_CASE = re.compile(_PAIR_KEY + _PAIR_TAIL, re.IGNORECASE)
_PAIR_WORDS = ("pass", "pwd", "secret", "token", "key", "credential", "sig", "authorization", "cookie", "dsn")

_USERINFO = re.compile(r"://(?P<user>[^:/@\s]*):[^@\s/]+@")  # the password of user:password@ in a URL

_TOKENISH = r"(?=[A-Za-z0-9._~+/=-]*(?:[0-9._~+/=-]|[a-z][A-Z]))"  # a digit, a symbol or a lower->upper step
# Credentials recognisable by their own shape; each needs a marker checked by _has_token_marker first.
_TOKENS = re.compile(
    "|".join(
        (
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.|\n)*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            r"(?P<bearer>\b(?:[Bb]earer|BEARER)\s+)[A-Za-z0-9._~+/-]{8,}=*",
            r"(?P<basic>\b(?:[Bb]asic|BASIC)\s+)" + _TOKENISH + r"[A-Za-z0-9+/]{8,}=*",
            r"\bsk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{16,}",  # OpenAI, Anthropic
            r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|\bwhsec_[A-Za-z0-9]{16,}",  # Stripe
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}|\bxapp-\d-[A-Za-z0-9-]{10,}|hooks\.slack\.com/services/[\w/]+",  # Slack
            r"\bAIza[0-9A-Za-z_-]{30,}|\bya29\.[0-9A-Za-z_-]{20,}|\bGOCSPX-[A-Za-z0-9_-]{20,}",  # Google
            r"\bgh[pousr]_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{30,}",  # GitHub
            r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",  # AWS access key ids
            r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
            r"\blsv2_[a-z]{2}_[A-Za-z0-9_]{16,}|\bhf_[A-Za-z0-9]{30,}",  # LangSmith, Hugging Face
        )
    )
)


def _has_token_marker(text: str) -> bool:
    """Whether `text` may hold one of _TOKENS: grouped substring checks (fast, in C) spare the regular
    expression on the vast majority of values."""
    return (
        (
            "_" in text
            and ("sk_" in text or "rk_" in text or "whsec_" in text or "gh" in text or "lsv2_" in text or "hf_" in text)
        )
        or (
            "-" in text
            and ("sk-" in text or "xox" in text or "xapp-" in text or "GOCSPX-" in text or "-----BEGIN" in text)
        )
        or ("." in text and ("eyJ" in text or "ya29." in text or "hooks.slack" in text))
        or ("A" in text and ("AIza" in text or "AKIA" in text or "ASIA" in text or "ABIA" in text or "ACCA" in text))
        or (" " in text and ("earer" in text or "EARER" in text or "asic" in text or "ASIC" in text))
    )


def _mask_token(match: re.Match[str]) -> str:
    scheme = match.group("bearer") or match.group("basic")  # the auth scheme word stays
    return f"{scheme}{REDACTED}" if scheme else REDACTED


def _masked_value(value: str) -> str:
    if value.startswith(('"', '\\"', "'")):
        quote = "'" if value.startswith("'") else value[: value.index('"') + 1]
        return f"{quote}{REDACTED}{quote}"
    parts = value.split(None, 1)
    return f"{parts[0]} {REDACTED}" if len(parts) == 2 else REDACTED


def _mask_pair(match: re.Match[str]) -> str:
    start = match.start("value") - match.start()
    return match.group(0)[:start] + _masked_value(match.group("value"))


def _scrub_pairs(text: str) -> str:
    lowered = text.lower()
    if not any(word in lowered for word in _PAIR_WORDS):
        return text
    if len(lowered) != len(text):
        return _PAIR_ANY_CASE.sub(_mask_pair, text)
    parts: list[str] = []
    position = 0
    for match in _PAIR_LOWER.finditer(lowered):
        value_start, end = match.span("value")
        parts.append(text[position:value_start])
        parts.append(_masked_value(text[value_start:end]))
        position = end
    if not parts:
        return text
    parts.append(text[position:])
    return "".join(parts)


def safe_str(value: Any) -> str:
    """`str(value)`, or a placeholder naming the type when its `__str__` raises."""
    try:
        return str(value)  # never anything but a str: str() raises when __str__ returns something else
    except Exception:
        return f"<unprintable {type(value).__qualname__}>"


_NATIVE = (dt.datetime, dt.date, dt.time, uuid.UUID)  # the JSON renderer writes these itself


class Redactor:
    """Replaces secrets and PII in keys and values; cheap when there is nothing to replace."""

    def __init__(self, extra_keys: Iterable[str] = (), extra_patterns: Sequence[re.Pattern[str]] = ()) -> None:
        self._key_parts = tuple(part.lower() for part in (*_SECRET_KEY_PARTS, *extra_keys) if part)
        self._pii_patterns = tuple(extra_patterns)
        self._key_cache: dict[str, bool] = {}
        self._text_memo: dict[str, object] = {}
        self._resources: dict[int, tuple[Any, Any]] = {}

    def is_secret_key(self, key: str) -> bool:
        cached = self._key_cache.get(key)
        if cached is None:
            lowered = key.lower()
            exempt = lowered in EXEMPT_KEYS or lowered.startswith(EXEMPT_PREFIXES)
            cached = not exempt and any(part in lowered for part in self._key_parts)
            if len(self._key_cache) < 10_000:
                self._key_cache[key] = cached
        return cached

    def scrub_text(self, text: str) -> str:
        """Mask secret-looking substrings and PII inside free text (the same object when nothing was masked)."""
        if len(text) > MEMO_MAX_LEN:
            return self._scan_text(text)
        memo = self._text_memo
        known = memo.get(text)
        if known is None:
            scrubbed = self._scan_text(text)
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            memo[text] = known = _UNCHANGED if scrubbed is text else scrubbed
        return text if known is _UNCHANGED else known  # type: ignore[return-value]

    def _scan_text(self, text: str) -> str:
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT] + f"...[cut {len(text) - MAX_TEXT} characters]"
        if len(text) >= 5:  # the shortest secret form, pwd=x
            if _has_token_marker(text):
                text = _TOKENS.sub(_mask_token, text)
            if "=" in text or ":" in text:
                text = _scrub_pairs(text)
                if "://" in text and "@" in text:
                    text = _USERINFO.sub(lambda m: f"://{m.group('user')}:{REDACTED}@", text)
        for pattern in self._pii_patterns:
            text = pattern.sub(REDACTED, text)
        return text

    def scrub_value(self, key: str, value: Any) -> Any:
        """The value of `key`, scrubbed: REDACTED under a secret key, else scrubbed at any depth.

        Under a secret key a list or tuple (an OTel sequence attribute, such as a captured header's values) becomes
        as many REDACTED strings, so that the attribute keeps its type for the backends that query it.
        """
        if self.is_secret_key(key):
            if isinstance(value, (list, tuple)):
                return [REDACTED] * len(value)
            return REDACTED if value is not None else None
        return self.scrub(value)

    def scrub(self, value: Any, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
        """`value` with every string scrubbed and every value under a secret key replaced, at any depth.

        Returns the value itself when nothing changed. Strings, numbers, bools, None and dates stay what they are;
        dicts, lists, tuples and sets are rebuilt as dicts and lists; bytes and any other object become text.
        Circular references and nesting deeper than MAX_DEPTH become placeholders.
        """
        kind = type(value)
        if kind is str:
            return self.scrub_text(value)
        if value is None or kind is int or kind is float or kind is bool or isinstance(value, _NATIVE):
            return value
        if isinstance(value, (Mapping, list, tuple, set, frozenset)):
            return self._scrub_container(value, depth, seen)
        if isinstance(value, (int, float)) and not isinstance(value, str):  # enums, numpy scalars...
            return value
        text = bytes(value).decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else safe_str(value)
        return self.scrub_text(text)

    def _scrub_container(self, value: Any, depth: int, seen: frozenset[int]) -> Any:
        if id(value) in seen:
            return CIRCULAR
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        inner = seen | {id(value)}
        if isinstance(value, Mapping):
            return self._scrub_mapping(value, depth, inner)
        items = [self.scrub(item, depth + 1, inner) for item in value]
        if type(value) in (list, tuple) and all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items

    def _scrub_mapping(self, data: Mapping[Any, Any], depth: int, seen: frozenset[int]) -> Any:
        changed = type(data) is not dict
        result: dict[Any, Any] = {}
        for key, value in data.items():
            name = key if isinstance(key, str) else safe_str(key)
            new_key = self.scrub_text(name)
            if self.is_secret_key(name):
                new = REDACTED if value is not None else None
            else:
                new = self.scrub(value, depth + 1, seen)
            changed = changed or new_key is not key or new is not value
            result[new_key] = new
        return result if changed else data

    def scrub_mapping(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        """A scrubbed copy of flat attributes, or None when nothing needed scrubbing (callers keep the original)."""
        if self.seen_clean(data):
            return None
        changed: dict[str, Any] | None = None
        for key, value in data.items():
            new_key = self.scrub_text(key)
            new = self.scrub_value(key, value)
            if new is not value or new_key is not key:
                if changed is None:
                    changed = dict(data)
                if new_key is not key:
                    del changed[key]
                changed[new_key] = new
        return changed

    def seen_clean(self, data: Mapping[str, Any], skip: frozenset[str] = frozenset(), *, keys: bool = True) -> bool:
        """True when every value (but those under `skip`) was seen before and needed nothing: its key known not to
        be secret (and, with `keys`, the key's own text scrubbed clean), a text value scrubbed clean, any other value
        a number, a bool or None. The common case (a server span's dozen attributes, a log line's fields), answered
        by lookups alone; anything else (a new text, a sequence, a secret key) takes the full path."""
        memo, secret_keys = self._text_memo, self._key_cache
        for key, value in inner_dict(data).items():
            if key in skip:
                continue
            if secret_keys.get(key) is not False or (keys and memo.get(key) is not _UNCHANGED):
                return False
            kind = type(value)
            if kind is str:
                if memo.get(value) is not _UNCHANGED:
                    return False
            elif value is not None and kind is not int and kind is not float and kind is not bool:
                return False
        return True

    def scrub_attributes(self, attributes: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """OTel attributes scrubbed, as a mapping OTel can hold (sequences stay sequences of scalars)."""
        if not attributes:
            return attributes
        scrubbed = self.scrub_mapping(attributes)
        if scrubbed is None:
            return attributes
        for key, value in scrubbed.items():
            if isinstance(value, list):
                scrubbed[key] = tuple(value)
        return scrubbed

    def scrub_resource_attributes(self, resource: Any) -> Any:
        """A resource's attributes scrubbed once per resource (resources are few and long-lived)."""
        cached = self._resources.get(id(resource))
        if cached is None or cached[0] is not resource:
            scrubbed = self.scrub_attributes(resource.attributes)
            new = resource if scrubbed is resource.attributes else type(resource)(scrubbed, resource.schema_url)
            if len(self._resources) > 64:
                self._resources.clear()
            cached = self._resources[id(resource)] = (resource, new)
        return cached[1]


def _with_dropped(new: Any, dropped: int) -> Any:
    """Scrubbed attributes that keep the SDK's count of attributes dropped by its limits."""
    if not dropped:
        return new
    bounded = BoundedAttributes(maxlen=None, attributes=new, immutable=True)
    bounded.dropped = dropped
    return bounded


def redact_span(span: ReadableSpan, redactor: Redactor) -> ReadableSpan:
    """The span itself when it holds no secret, else a copy with the secrets replaced (names, status
    description, attributes, events, links and resource)."""
    original_attributes, original_events, original_links = span_attributes(span), span.events, span.links
    name = redactor.scrub_text(span.name)
    attributes = redactor.scrub_attributes(original_attributes)
    events = [_redact_event(event, redactor) for event in original_events] if original_events else []
    links = [_redact_link(link, redactor) for link in original_links] if original_links else []
    status = span.status
    description = redactor.scrub_text(status.description) if status.description else status.description
    resource = redactor.scrub_resource_attributes(span.resource)
    if (
        name is span.name
        and attributes is original_attributes
        and description is status.description
        and resource is span.resource
        and (not events or all(new is old for new, old in zip(events, original_events, strict=True)))
        and (not links or all(new is old for new, old in zip(links, original_links, strict=True)))
    ):
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=resource,
        attributes=_with_dropped(attributes, span.dropped_attributes),
        events=events,
        links=links,
        kind=span.kind,
        status=Status(status.status_code, description) if description is not status.description else status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _redact_event(event: Event, redactor: Redactor) -> Event:
    name = redactor.scrub_text(event.name)
    attributes = redactor.scrub_attributes(event.attributes)
    if attributes is event.attributes and name is event.name:
        return event
    return Event(name, _with_dropped(attributes, event.dropped_attributes), event.timestamp)


def _redact_link(link: Link, redactor: Redactor) -> Link:
    attributes = redactor.scrub_attributes(link.attributes)
    if attributes is link.attributes:
        return link
    return Link(link.context, _with_dropped(attributes, link.dropped_attributes))


def redact_log_record(record: ReadableLogRecord, redactor: Redactor) -> ReadableLogRecord:
    """The record itself when it holds no secret, else a copy with body, attributes and resource scrubbed."""
    log = record.log_record
    body = redactor.scrub(log.body)
    attributes = redactor.scrub_attributes(log.attributes)
    resource = redactor.scrub_resource_attributes(record.resource)
    if body is log.body and attributes is log.attributes and resource is record.resource:
        return record
    new_log = copy.copy(log)
    new_log.body = body
    new_log.attributes = _with_dropped(attributes, record.dropped_attributes)
    return dataclasses.replace(record, log_record=new_log, resource=resource)


def scrub_resource(provider: Any, redactor: Redactor) -> None:
    """Scrub the SDK's resource in place, once, right after the providers are built (before anything is exported).

    The tracer, meter and logger providers share the one resource the SDK builds from OTEL_RESOURCE_ATTRIBUTES,
    OTEL_SERVICE_NAME and the resource detectors; scrubbing it once covers every signal, metrics included.
    """
    resource = getattr(provider, "resource", None)
    if resource is None:
        return
    scrubbed = redactor.scrub_mapping(resource.attributes)
    if scrubbed is not None:
        resource._attributes = BoundedAttributes(attributes=scrubbed, immutable=True, max_value_len=None)


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


class RedactingLogExporter(LogRecordExporter):
    """Wraps a log exporter: records emitted straight through the OTel Logs API (not our log pipeline) are
    scrubbed too."""

    def __init__(self, exporter: LogRecordExporter, redactor: Redactor) -> None:
        self._exporter = exporter
        self._redactor = redactor

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return self._exporter.export([redact_log_record(record, self._redactor) for record in batch])

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._exporter.shutdown()  # type: ignore[no-untyped-call]
