"""The pytest plugin (entry point `pytest11`): the `captured_telemetry` fixture for users' own tests.

    def test_the_answer_is_costed(captured_telemetry):
        answer_question("what is RAG?")
        generate = captured_telemetry.span("chat gpt-4o-mini")
        assert generate.attributes["rag.cost_usd"] > 0
        assert "sk-" not in str([r.log_record.body for r in captured_telemetry.log_records()])

The real SDK with in-memory exporters is installed as the process's providers on first use (see
`otel_rag.testing`); each test starts with no spans or log records and no user left over from an earlier test.
The app under test should not call `otel_rag.configure()` (the SDK lets a process install its providers once).
Loading the plugin imports nothing but this module: the fixture imports the SDK when a test asks for it.
"""

from __future__ import annotations

import pytest

from otel_rag.testing import CapturedTelemetry, capture_telemetry

__all__ = ["captured_telemetry"]


@pytest.fixture
def captured_telemetry() -> CapturedTelemetry:
    """Spans, log records and metric points this test's code produces, as they would be exported."""
    from otel_rag._telemetry.tracing import request_user_box

    request_user_box.set(None)  # a user set by an earlier test must not leak into this one
    return capture_telemetry()
