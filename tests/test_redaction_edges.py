"""The redactor's edges, each pinned by an exact expectation (written against the mutants that survived the broad
tests, see docs/testing.md): every token family alone, the cheap pre-check's selectivity, quoting and auth
schemes kept in pairs, text whose lower-casing changes length, depth and cycle limits, and span and log record
copies that keep everything but the secrets."""

from __future__ import annotations

import enum
import re
import types
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

from otel_rag._telemetry import redaction
from otel_rag._telemetry.redaction import (
    CIRCULAR,
    MAX_DEPTH,
    MAX_TEXT,
    REDACTED,
    TOO_DEEP,
    RedactingLogExporter,
    RedactingSpanExporter,
    Redactor,
    redact_log_record,
    redact_span,
    safe_str,
    scrub_resource,
)

R = Redactor()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rk_live_51STRIPErestricted0", REDACTED),
        ("whsec_0123456789abcdefghij", REDACTED),
        ("hf_0123456789ABCDEFKLMNOPQRSTUVWXYZ", REDACTED),
        ("lsv2_sk_0123456789abcdefghij", REDACTED),
        ("xoxp-0123456789-abcdef", REDACTED),
        ("xapp-1-A0123456789-abc", REDACTED),
        ("GOCSPX-0123456789abcdefghijkl", REDACTED),
        ("AIzaSy0123456789abcdefghijklmnopqrstu", REDACTED),
        ("ya29.0123456789abcdefghijklmn", REDACTED),
        ("gho_0123456789abcdefghijklmnopqrstuvwx", REDACTED),
        ("ghu_0123456789abcdefghijklmnopqrstuvwx", REDACTED),
        ("ghs_0123456789abcdefghijklmnopqrstuvwx", REDACTED),
        ("ghr_0123456789abcdefghijklmnopqrstuvwx", REDACTED),
        ("AKIAIOSFODNN7EXAMPLE", REDACTED),
        ("ASIAIOSFODNN7EXAMPLE", REDACTED),
        ("ABIAIOSFODNN7EXAMPLE", REDACTED),
        ("ACCAIOSFODNN7EXAMPLE", REDACTED),
        ("hooks.slack.com/services/T0/B0/XYZ", REDACTED),
        ("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----", REDACTED),
        ("-----BEGIN EC PRIVATE KEY-----\nMIIE cut short", REDACTED),
        ("BEARER ABCDEFGHIJKLMNOP", f"BEARER {REDACTED}"),
        ("bearer abcdefghijklmnop", f"bearer {REDACTED}"),
        ("BASIC QUxBRERJTjpPUEVO", f"BASIC {REDACTED}"),
        ("Authorization: Basic abcdefgh", f"Authorization: Basic {REDACTED}"),  # a pair keeps the scheme word
        ("Authorization: Bearer x.y", f"Authorization: Bearer {REDACTED}"),
        ("pwd=x", f"pwd={REDACTED}"),  # the shortest form
        ("token=abc", f"token={REDACTED}"),
        ("password='two words'", f"password='{REDACTED}'"),
        ('{"password": "x y", "n": 1}', f'{{"password": "{REDACTED}", "n": 1}}'),
        ('{\\"password\\": \\"x\\"}', f'{{\\"password\\": \\"{REDACTED}\\"}}'),
        ("a=1 password=p1 b=2 token=t2 c=3", f"a=1 password={REDACTED} b=2 token={REDACTED} c=3"),
        ("postgresql://rag:pw@db/x and http://u:p@h", f"postgresql://rag:{REDACTED}@db/x and http://u:{REDACTED}@h"),
    ],
)
def test_each_form_alone_gives_exactly_this(text: str, expected: str) -> None:
    assert R.scrub_text(text) == expected


def test_text_whose_lower_case_is_longer_takes_the_any_case_path() -> None:
    # "İ" lower-cases to two characters: positions in the lower-cased text would not line up with the original.
    assert R.scrub_text("İstanbul PASSWORD=hunter2 x") == f"İstanbul PASSWORD={REDACTED} x"
    assert R.scrub_text("İ 'token': 'two words' y") == f"İ 'token': '{REDACTED}' y"
    assert R.scrub_text("İ Authorization: Basic abcdefgh y") == f"İ Authorization: Basic {REDACTED} y"
    assert R.scrub_text("İ no pairs here") == "İ no pairs here"


def test_a_text_with_every_pair_word_is_still_scanned() -> None:
    text = "pass pwd secret token key credential sig authorization cookie dsn, then password=hunter2"
    assert R.scrub_text(text).endswith(f"password={REDACTED}")


@pytest.mark.parametrize("text", ["plain_text", "well-known", "e.g. this", "Apple", "a b c", "sk", "rk", "xo x"])
def test_the_pre_check_lets_ordinary_text_skip_the_regular_expression(text: str) -> None:
    assert redaction._has_token_marker(text) is False


def test_long_text_is_cut_before_scanning() -> None:
    assert R.scrub_text("x" * MAX_TEXT) == "x" * MAX_TEXT
    assert R.scrub_text("x" * (MAX_TEXT + 3)) == "x" * MAX_TEXT + "...[cut 3 characters]"
    assert R.scrub_text("y" * 4) == "y" * 4


def test_short_texts_are_remembered_with_the_same_answer_and_a_bounded_memo() -> None:
    """The memo that makes a span's repeated strings cheap (issue 16) must answer exactly as a scan would."""
    redactor = Redactor(extra_patterns=[re.compile(r"\d{3}-\d{4}")])
    secret = "Authorization: Bearer abcdefghijklmnop1234"
    first = redactor.scrub_text(secret)
    assert first == "Authorization: Bearer [REDACTED]"
    assert redactor.scrub_text("".join(secret)) == first  # an equal string, another object: the same answer
    assert redactor.scrub_text("call 555-1234") == "call [REDACTED]" == redactor.scrub_text("call 555-1234")
    clean = "".join(["GET /ping", ""])
    assert redactor.scrub_text(clean) is clean
    again = "".join(["GET /ping", " "]).strip()  # equal to a remembered text, but another object
    assert again is not clean and redactor.scrub_text(again) is again  # callers compare identity to copy less
    long_secret = "x" * (redaction.MEMO_MAX_LEN + 1) + " password=hunter22"
    assert redactor.scrub_text(long_secret).endswith("password=[REDACTED]")
    for number in range(redaction.MEMO_ENTRIES + 10):
        redactor.scrub_text(f"text {number}")
    assert len(redactor._text_memo) <= redaction.MEMO_ENTRIES
    assert redactor.scrub_text(secret) == first


def test_attributes_seen_clean_pass_by_lookups_and_a_secret_among_them_is_still_caught() -> None:
    """The fast path of scrub_mapping (issue 16) answers only for what it has seen clean; anything else is scanned."""
    redactor = Redactor()
    clean: dict[str, Any] = {"http.request.method": "GET", "url.path": "/ping", "status": 200, "ok": True, "ratio": 0.5}
    for attributes in (clean, clean, BoundedAttributes(attributes=clean)):  # the second time by lookups alone
        assert redactor.scrub_mapping(attributes) is None
    cases = [
        ("url.query", "token=abcdefgh12345678", "token=[REDACTED]"),
        ("password", "hunter2", "[REDACTED]"),
        ("api_key", "/ping", "[REDACTED]"),  # a secret key holding a text seen clean elsewhere
        ("client.port", 8080, 8080),  # a number under a new key: the key is scanned, the value kept
        ("http.request.header.authorization", ("Bearer abcdefgh12345678",), ("[REDACTED]",)),
        ("url.path", "/u?api_key=supersecret123", "/u?api_key=[REDACTED]"),
        ("note", ["x"], ["x"]),  # a list is not a value the fast path knows: scanned (clean, so kept as it is)
    ]
    for _ in range(2):  # and again, once every key and text has been seen
        for key, value, expected in cases:
            changed = redactor.scrub_attributes({**clean, key: value})
            assert changed is not None, key
            assert changed[key] == expected, key
            assert {k: v for k, v in changed.items() if k != key} == {k: v for k, v in clean.items() if k != key}


class _Color(enum.IntEnum):
    RED = 1


class _NotText:
    def __str__(self) -> Any:
        return 42  # noqa: PLE0307 - str() refuses this


class _Broken:
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_values_keep_their_type_unless_they_must_become_text() -> None:
    import datetime as dt
    import uuid

    when, ident = dt.datetime(2026, 1, 2, tzinfo=dt.UTC), uuid.uuid4()
    assert R.scrub(when) is when and R.scrub(ident) is ident and R.scrub(dt.date(2026, 1, 2)) == dt.date(2026, 1, 2)
    assert R.scrub(_Color.RED) is _Color.RED
    assert R.scrub(b"token=abc \xff") == f"token={REDACTED} \ufffd"
    assert R.scrub(bytearray(b"ok")) == "ok"
    assert R.scrub(3.5) == 3.5 and R.scrub(True) is True and R.scrub(None) is None and R.scrub(7) == 7
    assert safe_str(_Broken()) == "<unprintable _Broken>"
    assert safe_str(_NotText()) == "<unprintable _NotText>"


def test_secret_keys_keep_none_and_keys_are_scrubbed() -> None:
    assert R.scrub_value("password", None) is None
    # a sequence attribute under a secret key keeps its type: one REDACTED per value (captured headers)
    assert R.scrub_value("http.request.header.authorization", ["Bearer a", "Bearer b"]) == [REDACTED, REDACTED]
    assert R.scrub_value("api_key", ("k1",)) == [REDACTED] and R.scrub_value("token", []) == []
    assert R.scrub_attributes({"http.response.header.set_cookie": ("session=1",)}) == {
        "http.response.header.set_cookie": (REDACTED,)
    }
    assert R.scrub({"password": None, "token": 0}) == {"password": None, "token": REDACTED}
    assert R.scrub({1: "one", None: "x"}) == {"1": "one", "None": "x"}
    assert R.scrub(types.MappingProxyType({"a": "b"})) == {"a": "b"}
    assert type(R.scrub(types.MappingProxyType({"a": "b"}))) is dict
    assert R.scrub_mapping({"Bearer abcdefgh12345": 1}) == {f"Bearer {REDACTED}": 1}


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": [value]}
    return value


def test_depth_is_counted_exactly() -> None:
    # Each {"k": [...]} is two levels; the limit counts containers from the outside.
    within = R.scrub(_nested(MAX_DEPTH // 2))
    assert TOO_DEEP not in repr(within) and "leaf" in repr(within)
    assert TOO_DEEP in repr(R.scrub(_nested(MAX_DEPTH // 2 + 1)))
    deep = R.scrub(_nested(MAX_DEPTH // 2 + 1))
    node = deep
    for _ in range(MAX_DEPTH // 2):
        node = node["k"][0]
    assert node == TOO_DEEP  # the container at depth MAX_DEPTH, not one level earlier or later


def test_cycles_become_a_placeholder_at_the_first_repeat() -> None:
    loop: list[Any] = ["a"]
    loop.append(loop)
    assert R.scrub(loop) == ["a", CIRCULAR]
    ring: dict[str, Any] = {"name": "r"}
    ring["self"] = ring
    assert R.scrub(ring) == {"name": "r", "self": CIRCULAR}
    shared = ["x"]
    assert R.scrub([shared, shared]) == [shared, shared]  # seen twice, but not inside itself: no cycle


def test_attributes_stay_otel_shaped() -> None:
    scrubbed = R.scrub_attributes({"l": ["Bearer abcdefgh1234", "ok"], "n": 1})
    assert scrubbed == {"l": (f"Bearer {REDACTED}", "ok"), "n": 1}
    assert isinstance(scrubbed["l"], tuple)
    plain = {"a": "b"}
    assert R.scrub_attributes(plain) is plain and R.scrub_attributes(None) is None


def test_a_scrubbed_resource_keeps_its_schema_url() -> None:
    resource = Resource({"db": "postgresql://u:pw@h/x"}, "https://opentelemetry.io/schemas/1.26.0")
    scrubbed = R.scrub_resource_attributes(resource)
    assert scrubbed.schema_url == resource.schema_url and scrubbed.attributes["db"] == f"postgresql://u:{REDACTED}@h/x"
    assert R.scrub_resource_attributes(resource) is scrubbed  # once per resource
    clean = Resource({"service.name": "s"})
    assert R.scrub_resource_attributes(clean) is clean


def _bounded(attributes: dict[str, Any], dropped: int) -> BoundedAttributes:
    bounded = BoundedAttributes(maxlen=None, attributes=attributes, immutable=True)
    bounded.dropped = dropped
    return bounded


def test_a_redacted_span_keeps_everything_but_the_secrets() -> None:
    context = SpanContext(trace_id=0xABC, span_id=0x1, is_remote=False)
    parent = SpanContext(trace_id=0xABC, span_id=0x2, is_remote=True)
    scope = InstrumentationScope("scope", "1.0")
    span = ReadableSpan(
        name="op token=abc",
        context=context,
        parent=parent,
        resource=Resource({"service.name": "svc"}),
        attributes=_bounded({"password": "p", "ok": 1}, dropped=3),
        events=[Event("evt token=e", _bounded({"k": "token=v"}, dropped=2), timestamp=123)],
        links=[Link(parent, _bounded({"token": "l"}, dropped=4))],
        kind=SpanKind.CLIENT,
        status=Status(StatusCode.ERROR, "failed token=s"),
        start_time=10,
        end_time=20,
        instrumentation_scope=scope,
    )
    copy = redact_span(span, R)
    assert copy.name == f"op token={REDACTED}"
    assert (copy.context, copy.parent, copy.start_time, copy.end_time) == (context, parent, 10, 20)
    assert copy.kind is SpanKind.CLIENT and copy.instrumentation_scope is scope
    assert dict(copy.attributes or {}) == {"password": REDACTED, "ok": 1} and copy.dropped_attributes == 3
    (event,) = copy.events
    assert (event.name, event.timestamp, dict(event.attributes or {})) == (
        f"evt token={REDACTED}",
        123,
        {"k": f"token={REDACTED}"},
    )
    assert event.dropped_attributes == 2
    (link,) = copy.links
    assert (
        link.context == parent and dict(link.attributes or {}) == {"token": REDACTED} and link.dropped_attributes == 4
    )
    assert copy.status.status_code is StatusCode.ERROR and copy.status.description == f"failed token={REDACTED}"
    with pytest.raises(TypeError):
        copy.attributes["x"] = 1  # type: ignore[index]


def test_a_clean_span_with_events_and_links_is_passed_on_as_it_is() -> None:
    context = SpanContext(trace_id=1, span_id=1, is_remote=False)
    span = ReadableSpan(
        name="clean",
        context=context,
        attributes={"a": "b"},
        events=[Event("e", {"k": "v"}, 1)],
        links=[Link(context, {"l": "m"})],
        status=Status(StatusCode.ERROR, "plain failure"),
    )
    assert redact_span(span, R) is span
    event_only = ReadableSpan(name="n", context=context, events=[Event("secret token=x", {}, 5)])
    assert redact_span(event_only, R).events[0].name == f"secret token={REDACTED}"
    link_only = ReadableSpan(name="n", context=context, links=[Link(context, {"password": "p"})])
    assert redact_span(link_only, R).links[0].attributes == {"password": REDACTED}


def _record(body: Any, attributes: dict[str, Any] | BoundedAttributes | None, resource: Resource) -> ReadableLogRecord:
    return ReadableLogRecord(
        LogRecord(timestamp=5, body=body, severity_number=SeverityNumber.WARN, attributes=attributes), resource=resource
    )


def test_log_records_keep_everything_but_the_secrets() -> None:
    resource = Resource({"service.name": "svc", "db": "postgresql://u:pw@h/x"})
    record = _record({"m": "token=abc"}, _bounded({"password": "p", "n": 2}, dropped=5), resource)
    copy = redact_log_record(record, R)
    assert copy.log_record.body == {"m": f"token={REDACTED}"}
    assert dict(copy.log_record.attributes or {}) == {"password": REDACTED, "n": 2}
    assert copy.dropped_attributes == 5
    assert copy.resource.attributes["db"] == f"postgresql://u:{REDACTED}@h/x"
    assert copy.log_record.timestamp == 5 and copy.log_record.severity_number is SeverityNumber.WARN
    assert record.log_record.body == {"m": "token=abc"}  # the original is not touched
    clean = Resource({"service.name": "svc"})
    for changed in (
        _record("token=abc", {"a": "b"}, clean),
        _record("plain", {"password": "p"}, clean),
        _record("plain", {"a": "b"}, resource),
    ):
        assert redact_log_record(changed, R) is not changed
    unchanged = _record("plain", {"a": "b"}, clean)
    assert redact_log_record(unchanged, R) is unchanged


def test_scrub_resource_in_place_and_only_where_there_is_one() -> None:
    scrub_resource(object(), R)  # a provider without a resource (the no-op one): nothing to do, no error

    class Provider:
        resource = Resource({"service.name": "s", "note": "token=abc"})

    scrub_resource(Provider, R)
    assert Provider.resource.attributes["note"] == f"token={REDACTED}"
    with pytest.raises(TypeError):
        Provider.resource.attributes["note"] = "x"  # type: ignore[index]


def test_many_attributes_and_their_drop_count_survive_the_copy() -> None:
    many = {f"k{index}": index for index in range(200)} | {"token": "t"}
    context = SpanContext(trace_id=1, span_id=1, is_remote=False)
    event = Event("e", _bounded(dict(many), dropped=1), 1)
    copy = redact_span(ReadableSpan(name="n", context=context, attributes=_bounded(many, dropped=1), events=[event]), R)
    assert len(copy.attributes or {}) == 201 and copy.dropped_attributes == 1  # no default limit of 128
    (copied_event,) = copy.events
    assert len(copied_event.attributes or {}) == 201
    with pytest.raises(TypeError):
        copied_event.attributes["x"] = 1  # type: ignore[index]  # as immutable as the SDK's own


class _Recording(InMemorySpanExporter):
    def __init__(self) -> None:
        super().__init__()
        self.flushes: list[int] = []

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self.flushes.append(timeout_millis)
        return True


class _RecordingLogs(InMemoryLogRecordExporter):
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.flushes: list[int] = []

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self.flushes.append(timeout_millis)
        return True


def test_the_exporter_wrappers_scrub_and_pass_on_flush_and_shutdown() -> None:
    spans, logs = _Recording(), _RecordingLogs()
    span_wrapper, log_wrapper = RedactingSpanExporter(spans, R), RedactingLogExporter(logs, R)
    context = SpanContext(trace_id=1, span_id=1, is_remote=False)
    span_wrapper.export([ReadableSpan(name="token=abc", context=context)])
    log_wrapper.export([_record("token=abc", None, Resource({}))])
    assert [span.name for span in spans.get_finished_spans()] == [f"token={REDACTED}"]
    assert [record.log_record.body for record in logs.get_finished_logs()] == [f"token={REDACTED}"]
    assert span_wrapper.force_flush(1234) and log_wrapper.force_flush(4321)
    assert (spans.flushes, logs.flushes) == ([1234], [4321])
    span_wrapper.shutdown()
    log_wrapper.shutdown()
    assert spans._stopped and logs._stopped
