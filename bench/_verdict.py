"""One verdict line per goal, the same shape in every benchmark, and the rule of the CI regression guard.

Every figure is a ratio against a baseline measured in the same run (or a rate on this machine), so a verdict says
how far the goal is and the guard (bench/guard.py) can judge it without knowing the machine's speed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Goal:
    name: str  # "http_overhead vs uninstrumented"
    figure: float
    goal: float
    higher_is_better: bool = True
    unit: str = "x"

    @property
    def met(self) -> bool:
        return self.figure >= self.goal if self.higher_is_better else self.figure <= self.goal

    @property
    def within_half(self) -> bool:
        """The guard's rule: no worse than half the goal (a figure twice the goal where lower is better). Far from
        the noise of a shared CI machine, near enough to catch a change that doubles a cost."""
        return self.figure >= self.goal / 2 if self.higher_is_better else self.figure <= self.goal * 2

    def line(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        verdict = "met" if self.met else "NOT met"
        return f"verdict {self.name}: {self.figure:,.2f}{self.unit} (goal {sign} {self.goal:,g}{self.unit}): {verdict}"


def report(goals: list[Goal]) -> list[Goal]:
    """Print each goal's verdict line; returns them for bench/guard.py."""
    for goal in goals:
        print(goal.line())
    return goals
