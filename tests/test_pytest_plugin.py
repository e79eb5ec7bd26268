"""The `captured_telemetry` fixture, as a user's test suite gets it from the installed plugin (entry point)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import logging

import otel_rag
from otel_rag import rag


def test_a_stage_is_traced_costed_and_logged(captured_telemetry):
    otel_rag.set_user("user-7")
    with rag.generate(model="gpt-4o-mini", provider="openai") as stage:
        stage.usage(1000, 200)
        logging.getLogger("app").warning("answered with api_key=sk-live-123")
    span = captured_telemetry.span("chat gpt-4o-mini")
    assert span.attributes["gen_ai.usage.output_tokens"] == 200
    assert span.attributes["rag.cost_usd"] > 0
    assert captured_telemetry.metric_total("gen_ai.client.token.usage", **{"gen_ai.token.type": "input"}) >= 1


def test_each_test_starts_empty(captured_telemetry):
    assert captured_telemetry.finished() == [] and captured_telemetry.log_records() == []
    with otel_rag.trace_span("mine"):
        pass
    assert captured_telemetry.span("mine").attributes.get("enduser.id") is None  # no user from the test before


def test_a_missing_span_is_named_with_the_ones_there_are(captured_telemetry):
    with otel_rag.trace_span("present"):
        pass
    try:
        captured_telemetry.span("absent")
    except AssertionError as error:
        assert "0 spans named 'absent'; finished spans: ['present']" in str(error)
    else:
        raise AssertionError("expected an AssertionError")
"""


def test_the_plugin_gives_users_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)
