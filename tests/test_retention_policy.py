"""Retention's pure parts, in the inner loop: the tiers, the sampler's bound against the SDK's, the progress bar."""

from __future__ import annotations

import datetime as dt
import io
import random

import pytest
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

from otel_rag._cli.retention import ProgressBar
from otel_rag._config.settings import ConfigError, load_settings
from otel_rag._store.retention import DayPlan, Policy, sampler_bound

TODAY = dt.date(2026, 11, 30)


def test_a_day_is_hot_then_warm_then_cold_then_expired() -> None:
    policy = Policy(hot_days=7, warm_days=30, warm_sample_ratio=0.1, archive_days=365)
    tiers = {age: policy.tier(TODAY - dt.timedelta(days=age), TODAY) for age in (0, 6, 7, 29, 30, 364, 365)}
    assert tiers == {0: "hot", 6: "hot", 7: "warm", 29: "warm", 30: "cold", 364: "cold", 365: "expired"}
    with pytest.raises(ValueError, match="hot days <= warm days <= archive days"):
        Policy(hot_days=8, warm_days=7)


def test_the_settings_refuse_tiers_out_of_order_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"OTEL_RAG_WARM_DAYS='5' is not valid.*at least OTEL_RAG_HOT_DAYS"):
        load_settings({"OTEL_RAG_WARM_DAYS": "5"})
    with pytest.raises(ConfigError, match="OTEL_RAG_ARCHIVE_DAYS='20'"):
        load_settings({"OTEL_RAG_ARCHIVE_DAYS": "20"})
    with pytest.raises(ConfigError, match=r"OTEL_RAG_ARCHIVE_URL='http://x'.*s3://bucket"):
        load_settings({"OTEL_RAG_ARCHIVE_URL": "http://x"})
    settings = load_settings({"OTEL_RAG_ARCHIVE_URL": "s3://bucket/prefix/", "OTEL_RAG_WARM_SAMPLE_RATIO": "0.25"})
    assert (settings.archive_url, settings.warm_sample_ratio, settings.hot_days) == ("s3://bucket/prefix", 0.25, 7)


@pytest.mark.parametrize("ratio", [0.0, 1e-9, 0.1, 0.5, 0.999, 1.0])
def test_the_sample_bound_is_the_sdk_samplers_bound(ratio: float) -> None:
    assert sampler_bound(ratio) == TraceIdRatioBased(ratio).bound
    rng = random.Random(ratio)
    for _ in range(200):
        trace_id = rng.getrandbits(128)
        decision = TraceIdRatioBased(ratio).should_sample(None, trace_id, "x").decision
        kept = decision is Decision.RECORD_AND_SAMPLE
        assert kept == ((trace_id & ((1 << 64) - 1)) < sampler_bound(ratio))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_one_line_per_day_on_a_terminal_and_prints_lines_otherwise() -> None:
    plan = DayPlan(TODAY, "warm", {"logs": None, "spans": None}, {"logs": 300, "spans": 100}, "archive+thin")
    terminal = _Terminal()
    bar = ProgressBar(terminal)
    bar.day(1, 2, plan)
    bar.rows(100)
    bar.rows(100)
    bar.day(2, 2, plan)
    bar.close()
    frames = terminal.getvalue().split("\r")
    assert "[1/2] 2026-11-30 archive+thin" in frames[1] and "0/400 rows" in frames[1]
    assert f"[{'#' * 15}{'.' * 15}] 200/400 rows\n" in frames[3]  # half the day's rows: half the bar, then a newline
    assert terminal.getvalue().endswith("0/400 rows\n")
    log = io.StringIO()
    lines = ProgressBar(log)
    lines.day(1, 2, plan)
    lines.rows(100)
    lines.close()
    assert log.getvalue() == "[1/2] 2026-11-30 archive+thin\n"
