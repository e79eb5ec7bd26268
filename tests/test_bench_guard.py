"""The CI regression guard's rule (bench/guard.py): a ratio fails only below half its goal, in either direction,
and a goal named as not guarded is reported without failing the step."""

from __future__ import annotations

import pytest

from bench import guard
from bench._verdict import Goal


@pytest.mark.parametrize(
    ("goal", "met", "within_half"),
    [
        (Goal("more is better", 0.70, 0.70), True, True),
        (Goal("more is better", 0.36, 0.70), False, True),
        (Goal("more is better", 0.34, 0.70), False, False),
        (Goal("less is better", 2.5, 2.5, higher_is_better=False), True, True),
        (Goal("less is better", 4.9, 2.5, higher_is_better=False), False, True),
        (Goal("less is better", 5.1, 2.5, higher_is_better=False), False, False),
    ],
)
def test_met_and_within_half(goal: Goal, met: bool, within_half: bool) -> None:
    assert (goal.met, goal.within_half) == (met, within_half)


def test_the_verdict_line_names_figure_goal_and_outcome() -> None:
    assert Goal("startup time vs stock distro", 1.04, 1.0, higher_is_better=False).line() == (
        "verdict startup time vs stock distro: 1.04x (goal <= 1x): NOT met"
    )
    assert Goal("spans/s", 31_250.0, 30_000, unit="").line() == "verdict spans/s: 31,250.00 (goal >= 30,000): met"


def test_the_guard_fails_on_a_regression_and_only_reports_an_unguarded_goal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    unguarded = next(iter(guard.NOT_GUARDED))
    fine = [Goal("fine", 0.8, 0.7), Goal(unguarded, 99.0, 2.5, higher_is_better=False)]
    monkeypatch.setattr(guard, "QUICK", {"fine": (lambda argv: fine, [])})
    assert guard.main() == 0
    assert "not guarded: " + unguarded in capsys.readouterr().out

    regressed = [Goal("halved", 0.3, 0.7)]
    monkeypatch.setattr(guard, "QUICK", {"fine": (lambda argv: fine, []), "bad": (lambda argv: regressed, [])})
    assert guard.main() == 1
    assert "REGRESSION verdict halved: 0.30x (goal >= 0.7x): NOT met" in capsys.readouterr().err
