"""From OTel records to table rows, column by column, without a database: what is kept, repaired, cut and
promoted (written against the mutants that survived the sink tests, see docs/testing.md)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import orjson
import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from otel_rag._store import rows
from otel_rag._store.rows import LOG_COLUMNS, SPAN_COLUMNS, Limits, clean_text, log_row, span_row, to_json

LIMITS = Limits(max_body=50, max_value=20, max_attributes=200)
WIDE = Limits(max_body=50, max_value=40, max_attributes=2000)  # room for timestamps inside events
T0 = 1_767_225_600_123_456_789  # 2026-01-01T00:00:00.123456789Z
RESOURCE = Resource({"service.name": "svc", "deployment.environment": "test"})


def test_clean_text() -> None:
    ascii_text = "plain"
    assert clean_text(ascii_text, 5) is ascii_text
    assert clean_text("a\x00b", 10) == "a\ufffdb"
    assert clean_text("é", 1) == "é"
    assert clean_text("half \udc80", 10) == "half ?"
    assert clean_text("x" * 12, 10) == "x" * 10 + "...[truncated 2 chars]"
    assert clean_text("é" * 11, 10) == "é" * 10 + "...[truncated 1 chars]"
    assert clean_text("\x00" * 3, 2) == "\ufffd" * 2 + "...[truncated 1 chars]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (float("nan"), None),
        (float("inf"), None),
        (float("-inf"), None),
        (1.5, 1.5),
        (2**63 - 1, 2**63 - 1),
        (2**63, str(2**63)),
        (-(2**63) + 1, -(2**63) + 1),
        (-(2**63), str(-(2**63))),
        (True, True),
        (None, None),
        ("x" * 25, "x" * 20 + "...[truncated 5 chars]"),
        (b"b\xff", "b\ufffd"),
        ({1: "a", "k" * 300: 2}, {"1": "a", "k" * 256 + "...[truncated 44 chars]": 2}),
        ((1, [2, "three"]), [1, [2, "three"]]),
        (uuid.UUID(int=1), "00000000-0000-0000-0...[truncated 16 chars]"),  # any other object: its text
    ],
)
def test_values_become_storable(value: Any, expected: Any) -> None:
    assert rows._clean_value(value, LIMITS) == expected


def test_to_json() -> None:
    assert to_json({}, LIMITS) == "{}" and to_json([], LIMITS) == "[]" and to_json(None, LIMITS) == "{}"
    assert to_json({"a": 1}, LIMITS) == '{"a":1}'
    assert to_json(BoundedAttributes(attributes={"a": 1}), LIMITS) == '{"a":1}'
    assert to_json({"a": "b\x00c"}, LIMITS) == '{"a":"b\ufffdc"}'
    assert json.loads(to_json({"a": "x" * 30}, LIMITS)) == {"a": "x" * 20 + "...[truncated 10 chars]"}
    assert json.loads(to_json({"a": 2**70}, LIMITS)) == {"a": str(2**70)}
    exactly = {"k": "v" * 12}  # {"k":"vvvvvvvvvvvv"} is 20 bytes: the fast path's limit, inclusive
    assert to_json(exactly, LIMITS) == orjson.dumps(exactly).decode()
    many = {f"key{index:03d}": "v" * 10 for index in range(60)}
    truncated = json.loads(to_json(many, LIMITS))
    assert truncated["otel_rag.truncated"] is True
    assert truncated["keys"] == [f"key{index:03d}" for index in range(50)]
    assert truncated["original_size"] == len(orjson.dumps(many))
    assert json.loads(to_json([{"a": "x" * 30}] * 20, LIMITS)) == {
        "otel_rag.truncated": True,
        "keys": [],
        **{"original_size": len(orjson.dumps([{"a": "x" * 20 + "...[truncated 10 chars]"}] * 20))},
    }


def test_numbers_promoted_to_columns() -> None:
    assert rows._number(True) is None and rows._number("1") is None and rows._number(2) == 2.0
    assert rows._integer(True) is None and rows._integer(1.0) == 1 and rows._integer("1") is None
    assert rows._integer(2**31 - 1) == 2**31 - 1 and rows._integer(2**31) is None
    assert rows._integer(-(2**31)) == -(2**31) and rows._integer(-(2**31) - 1) is None


def test_user_and_time_and_ids() -> None:
    assert rows._user({"enduser.id": "a", "user_id": "b"}) == "a"
    assert rows._user({"user_id": 7}) == "7"
    assert rows._user({"enduser.id": "u" * 300}) == "u" * 256 + "...[truncated 44 chars]"
    assert rows._user({}) is None
    assert rows._iso(T0) == "2026-01-01T00:00:00.123456+00:00"
    assert rows._iso(T0 + 1_000_000_000) == "2026-01-01T00:00:01.123456+00:00"  # a new second, a new prefix
    assert rows._iso(T0 + 1_000) == "2026-01-01T00:00:00.123457+00:00"
    ids = rows._RecordIds()
    first, second = ids.next(), ids.next()
    parsed = [uuid.UUID(first), uuid.UUID(second)]
    assert first != second and first[:23] == second[:23]  # one process prefix, a counter
    assert all(value.version == 4 and value.variant == uuid.RFC_4122 for value in parsed)
    assert int(second[-12:], 16) == int(first[-12:], 16) + 1
    ids._pid = -1  # as after a fork: a new random prefix, the counter starts again
    third = ids.next()
    assert third[:23] != first[:23] and third.endswith("-8000-000000000000")


def test_resources_are_converted_once_and_the_cache_stays_small() -> None:
    rows._resource_json.clear()
    service, text = rows._resource(RESOURCE, LIMITS)
    assert service == "svc" and json.loads(text) == {"service.name": "svc", "deployment.environment": "test"}
    assert rows._resource(RESOURCE, LIMITS)[1] is text
    assert rows._resource(Resource({}), LIMITS)[0] == "unknown_service"
    assert rows._resource(None, LIMITS) == ("unknown_service", "{}")
    for index in range(70):
        rows._resource(Resource({"service.name": f"s{index}"}), LIMITS)
    assert len(rows._resource_json) <= 65


def _log(**fields: Any) -> ReadableLogRecord:
    scope = fields.pop("scope", InstrumentationScope("app.logger"))
    resource = fields.pop("resource", RESOURCE)
    return ReadableLogRecord(LogRecord(**fields), resource=resource, instrumentation_scope=scope)


def test_names_are_cut_to_their_column_limits() -> None:
    long_scope = InstrumentationScope("s" * 300)
    row = log_row(_log(timestamp=T0, severity_text="W" * 40, scope=long_scope), LIMITS)
    assert (row[6], row[8]) == ("w" * 32 + "...[truncated 8 chars]", "s" * 256 + "...[truncated 44 chars]")
    span = ReadableSpan(
        name="n", context=SpanContext(1, 1, False), start_time=T0, end_time=T0, instrumentation_scope=long_scope
    )
    assert span_row(span, LIMITS)[12] == "s" * 256 + "...[truncated 44 chars]"
    rows._resource_json.clear()
    service = rows._resource(Resource({"service.name": "v" * 300}), LIMITS)[0]
    assert service == "v" * 256 + "...[truncated 44 chars]"
    exactly = {"k": "v" * 5}
    at_limit = Limits(max_body=10, max_value=5, max_attributes=len(orjson.dumps({"k": "vvvvv...[truncated 0 chars]"})))
    assert json.loads(to_json(exactly, at_limit)) == {"k": "v" * 5}  # exactly the attributes limit: kept whole


def test_a_log_row_column_by_column() -> None:
    rows._resource_json.clear()  # a resource converted here, with these limits
    record = _log(
        timestamp=T0,
        observed_timestamp=T0 + 5_000_000_000,
        trace_id=0xABC,
        span_id=0xDEF,
        severity_number=SeverityNumber.ERROR,
        severity_text="ERROR",
        body="b" * 60,
        attributes={"enduser.id": "ana", "rag.cost_usd": 0.5, "gen_ai.usage.input_tokens": 10, "output_tokens": 3},
    )
    row = dict(zip(LOG_COLUMNS, log_row(record, LIMITS), strict=True))
    assert row["time"] == "2026-01-01T00:00:00.123456+00:00"
    uuid.UUID(row["record_id"])
    assert (row["trace_id"], row["span_id"]) == (format(0xABC, "032x"), format(0xDEF, "016x"))
    assert (row["service_name"], row["user_id"], row["logger"]) == ("svc", "ana", "app.logger")
    assert (row["severity"], row["severity_number"]) == ("error", 17)
    assert row["body"] == "b" * 50 + "...[truncated 10 chars]"
    assert json.loads(row["attributes"])["enduser.id"] == "ana"
    assert json.loads(row["resource"]) == {"service.name": "svc", "deployment.environment": "test"}
    assert (row["cost_usd"], row["input_tokens"], row["output_tokens"]) == (0.5, 10, 3)


def test_a_log_row_fills_what_the_record_leaves_out() -> None:
    bare = dict(zip(LOG_COLUMNS, log_row(_log(observed_timestamp=T0, scope=None), LIMITS), strict=True))
    assert bare["time"] == "2026-01-01T00:00:00.123456+00:00"  # no timestamp: the observed one
    assert (bare["trace_id"], bare["span_id"], bare["logger"], bare["body"]) == (None, None, None, None)
    assert (bare["severity"], bare["severity_number"]) == ("info", 9)
    assert bare["attributes"] == "{}" and bare["user_id"] is None
    assert (bare["cost_usd"], bare["input_tokens"], bare["output_tokens"]) == (None, None, None)
    for number, name in ((1, "trace"), (6, "debug"), (12, "info"), (13, "warning"), (20, "error"), (24, "critical")):
        row = log_row(_log(timestamp=T0, severity_number=SeverityNumber(number)), LIMITS)
        assert (row[6], row[7]) == (name, number)
    structured = log_row(_log(timestamp=T0, body={"k": ["v", 1]}), LIMITS)
    assert structured[9] == '{"k":["v",1]}'
    event = log_row(_log(timestamp=T0, event_name="gen_ai.evaluation.result", trace_id=0xABC), LIMITS)
    assert (event[9], event[2], event[3]) == ("gen_ai.evaluation.result", format(0xABC, "032x"), None)  # on a trace
    named = log_row(_log(timestamp=T0, event_name="e", body="said"), LIMITS)
    assert named[9] == "said"  # an event with a body keeps it
    assert log_row(_log(timestamp=0, observed_timestamp=0), LIMITS)[0] == "1970-01-01T00:00:00.000000+00:00"


def test_a_span_row_column_by_column() -> None:
    parent = SpanContext(trace_id=0xABC, span_id=0x2, is_remote=True)
    span = ReadableSpan(
        name="n" * 1100,
        context=SpanContext(trace_id=0xABC, span_id=0xABC1, is_remote=False),
        parent=parent,
        resource=RESOURCE,
        attributes={"enduser.id": "bob", "cost_usd": 0.25, "input_tokens": 4, "gen_ai.usage.output_tokens": 6},
        events=[Event("evt", {"k": "v"}, T0 + 1_000), Event("no time", None, 0)],
        kind=SpanKind.PRODUCER,
        status=Status(StatusCode.ERROR, "x" * 50),
        start_time=T0,
        end_time=T0 + 2_500_000,
        instrumentation_scope=InstrumentationScope("scope.name"),
    )
    row = dict(zip(SPAN_COLUMNS, span_row(span, WIDE), strict=True))
    assert (row["time"], row["end_time"]) == ("2026-01-01T00:00:00.123456+00:00", "2026-01-01T00:00:00.125956+00:00")
    assert row["duration_ms"] == 2.5
    assert (row["trace_id"], row["span_id"]) == (format(0xABC, "032x"), "000000000000abc1")
    assert row["parent_span_id"] == "0" * 15 + "2"
    assert json.loads(row["attributes"])["enduser.id"] == "bob"
    assert row["parent_remote"] is True
    assert (row["service_name"], row["user_id"]) == ("svc", "bob")
    assert row["name"] == "n" * 1024 + "...[truncated 76 chars]"
    assert (row["kind"], row["status"]) == ("PRODUCER", "ERROR")
    assert row["status_message"] == "x" * 40 + "...[truncated 10 chars]"
    assert row["scope"] == "scope.name"
    events = json.loads(row["events"])
    assert events == [
        {"name": "evt", "time": "2026-01-01T00:00:00.123457+00:00", "attributes": {"k": "v"}},
        {"name": "no time", "time": "2026-01-01T00:00:00.123456+00:00", "attributes": {}},
    ]
    assert (row["cost_usd"], row["input_tokens"], row["output_tokens"]) == (0.25, 4, 6)


def test_a_span_row_of_a_genai_call_inside_a_stage_leaves_the_counting_to_the_stage() -> None:
    span = ReadableSpan(
        name="chat",
        context=SpanContext(trace_id=1, span_id=1, is_remote=False),
        attributes={
            "rag.parent_stage": "generate",
            "rag.cost_usd": 1.0,
            "gen_ai.usage.input_tokens": 5,
            "gen_ai.usage.output_tokens": 7,
        },
        start_time=T0,
        end_time=None,
    )
    row = dict(zip(SPAN_COLUMNS, span_row(span, LIMITS), strict=True))
    assert (row["cost_usd"], row["input_tokens"], row["output_tokens"]) == (None, None, None)
    assert row["end_time"] == row["time"] and row["duration_ms"] == 0.0  # not ended: as long as nothing
    assert (row["parent_span_id"], row["parent_remote"], row["status_message"], row["scope"]) == (
        None,
        None,
        None,
        None,
    )
    assert (row["kind"], row["status"]) == ("INTERNAL", "UNSET")
    local = ReadableSpan(
        name="child",
        context=SpanContext(trace_id=1, span_id=3, is_remote=False),
        parent=SpanContext(trace_id=1, span_id=1, is_remote=False),
        start_time=T0,
        end_time=T0,
    )
    assert dict(zip(SPAN_COLUMNS, span_row(local, LIMITS), strict=True))["parent_remote"] is False


def test_plain_copies_of_the_sdks_attributes() -> None:
    bounded = BoundedAttributes(attributes={"a": 1})
    copied = rows._plain(bounded)
    assert copied == {"a": 1} and type(copied) is dict
    copied["b"] = 2
    assert "b" not in bounded
    assert rows._plain(None) == {} and rows._plain({"c": 3}) == {"c": 3}
    assert rows._first({"b": 2, "a": 1}, ("a", "b")) == 1 and rows._first({}, ("a",)) is None


def test_limits_defaults() -> None:
    limits = Limits()
    assert (limits.max_body, limits.max_value, limits.max_attributes) == (65_536, 16_384, 262_144)
    assert dt.datetime.fromisoformat(rows._iso(T0)).tzinfo is not None


def test_attributes_exactly_at_the_size_limit_are_kept_whole() -> None:
    data = {"first": "x" * 60, "second": "y" * 60}  # over max_value: the careful path, each value within it
    size = len(orjson.dumps(data))
    assert json.loads(to_json(data, Limits(max_value=100, max_attributes=size))) == data
    truncated = json.loads(to_json(data, Limits(max_value=100, max_attributes=size - 1)))
    assert truncated == {"otel_rag.truncated": True, "original_size": size, "keys": ["first", "second"]}
