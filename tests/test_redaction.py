"""The redactor on its own: every kind of secret in the corpus, at any depth, in every part of a span or log record."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, SpanContext, Status, StatusCode

from otel_rag._telemetry.redaction import REDACTED, Redactor, redact_log_record, redact_span, scrub_resource
from tests.support.secrets import CORPUS, Secret

REDACTOR = Redactor()


def test_the_corpus_has_at_least_25_kinds() -> None:
    assert len({secret.kind for secret in CORPUS}) >= 25


@pytest.mark.parametrize("secret", CORPUS, ids=lambda secret: secret.kind)
def test_every_kind_is_masked_in_free_text(secret: Secret) -> None:
    scrubbed = REDACTOR.scrub_text(f"before {secret.text} after")
    assert secret.leak not in scrubbed, scrubbed
    assert REDACTED in scrubbed
    assert scrubbed.startswith("before ") and scrubbed.endswith(" after")  # the rest of the text stays


@pytest.mark.parametrize(
    "text",
    [
        "input tokens: 120, tokens=5, max_tokens=100, token_count=3",
        "Basic information about refunds",
        "GET /items/42 HTTP/1.1",
        "user signed in at 12:30 from http://example.com/a",
        "sk- is how keys start",
        "design review at 15:00, status: ok",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert REDACTOR.scrub_text(text) == text


def test_secrets_in_lists_and_tuples_are_scrubbed_at_any_depth() -> None:
    bearer = "Bearer deepTOKEN0123456789"
    nested: Any = {"a": [{"b": ("x", [bearer, {"password": "p"}])}], "t": (bearer,), "s": {bearer}}
    for _ in range(10):
        nested = [nested, (nested,)]
    scrubbed = REDACTOR.scrub(nested)
    text = json.dumps(scrubbed)
    assert "deepTOKEN0123456789" not in text and '"p"' not in text
    assert text.count(REDACTED) > 100
    assert REDACTOR.scrub_value("headers", ("Authorization", bearer)) == ["Authorization", f"Bearer {REDACTED}"]
    assert REDACTOR.scrub_value("list", [bearer]) == [f"Bearer {REDACTED}"]


def test_values_under_secret_keys_go_whole_and_counts_are_exempt_only_by_exact_key() -> None:
    data = {
        "headers": {"Authorization": "anything at all", "Cookie": "session=1", "accept": "text/html"},
        "api_tokens": "abc",  # a key ending in "tokens" is not exempt by its suffix
        "refresh_tokens": ["r1", "r2"],
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.request.max_tokens": 256,
        "input_tokens": 3,
        "client_secret": {"nested": "whole value goes"},
    }
    scrubbed = REDACTOR.scrub(data)
    assert scrubbed["headers"] == {"Authorization": REDACTED, "Cookie": REDACTED, "accept": "text/html"}
    assert scrubbed["api_tokens"] == REDACTED and scrubbed["refresh_tokens"] == REDACTED
    assert scrubbed["client_secret"] == REDACTED
    for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.request.max_tokens"):
        assert scrubbed[key] == data[key]
    assert scrubbed["input_tokens"] == 3


def test_unchanged_values_are_returned_as_they_are() -> None:
    data = {"a": [1, "two", (3.0, None)], "b": {"c": "plain"}}
    assert REDACTOR.scrub(data) is data
    assert REDACTOR.scrub_mapping({"x": "plain", "n": 1}) is None


def test_pii_patterns_apply_to_every_string() -> None:
    redactor = Redactor(extra_keys=["ssn"], extra_patterns=[re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")])
    scrubbed = redactor.scrub({"contact": ["mail bob@example.com"], "ssn": "123-45-6789", "k": {"bob@x.io": 1}})
    assert scrubbed == {"contact": [f"mail {REDACTED}"], "ssn": REDACTED, "k": {REDACTED: 1}}


def _context(span_id: int) -> SpanContext:
    return SpanContext(trace_id=0xABC, span_id=span_id, is_remote=False)


def test_every_part_of_a_span_is_scrubbed() -> None:
    dsn = "postgresql://rag:SPANpassword0123@db/obs"
    span = ReadableSpan(
        name=f"connect {dsn}",
        context=_context(1),
        parent=None,
        resource=Resource.create({"service.name": "svc", "deployment.db": dsn}),
        attributes={"db.url": dsn, "http.request.header.authorization": ("Bearer x",), "ok": "fine"},
        events=[Event("exception", {"exception.message": f"cannot reach {dsn}", "exception.stacktrace": dsn})],
        links=[Link(_context(2), {"peer": dsn})],
        status=Status(StatusCode.ERROR, f"OperationalError: {dsn}"),
    )
    scrubbed = redact_span(span, REDACTOR)
    parts = [
        scrubbed.name,
        str(dict(scrubbed.attributes or {})),
        str([dict(event.attributes or {}) for event in scrubbed.events]),
        str([dict(link.attributes or {}) for link in scrubbed.links]),
        str(scrubbed.status.description),
        str(dict(scrubbed.resource.attributes)),
    ]
    for part in parts:
        assert "SPANpassword0123" not in part and REDACTED in part, part
    assert scrubbed.attributes is not None and scrubbed.attributes["ok"] == "fine"
    assert scrubbed.context == span.context and scrubbed.status.status_code is StatusCode.ERROR
    clean = ReadableSpan(name="clean", context=_context(3), attributes={"a": "b"})
    assert redact_span(clean, REDACTOR) is clean


def test_log_records_from_the_otel_api_are_scrubbed() -> None:
    record = ReadableLogRecord(
        LogRecord(
            timestamp=1,
            body={"message": "token=LOGtoken0123", "nested": [{"password": "x"}]},
            severity_number=SeverityNumber.INFO,
            attributes={"gen_ai.prompt": "my key is sk-proj-LOGkey0123456789abcdef"},
        ),
        resource=Resource.create({"service.name": "svc"}),
    )
    scrubbed = redact_log_record(record, REDACTOR)
    text = str(scrubbed.log_record.body) + str(dict(scrubbed.log_record.attributes or {}))
    assert "LOGtoken0123" not in text and "LOGkey0123456789abcdef" not in text and "'x'" not in text


def test_the_sdk_resource_is_scrubbed_in_place_for_every_signal() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({"service.name": "svc", "db.dsn.note": "postgresql://u:RESpassword0123@db/x"})
    provider = TracerProvider(resource=resource)
    scrub_resource(provider, REDACTOR)
    assert "RESpassword0123" not in str(dict(provider.resource.attributes))
    assert provider.resource.attributes["service.name"] == "svc"
