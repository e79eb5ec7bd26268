"""The CI regression guard: the quick variants of the benchmarks, failing only when a ratio falls below half its goal.

    python -m bench.guard        (a step of `make test`; about two minutes)

Not a timed test: every figure is a ratio against a baseline measured in the same run, and the bar is half the goal
(bench/_verdict.py), far below the noise of a shared machine. A goal whose figure is beyond half of it today cannot
be guarded by that rule: it is printed, named as not guarded, and does not fail the step (docs/performance.md says
which and why); it joins the guard the day it comes within half its goal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from bench import http_overhead, log_event, otlp_pipeline, sink_throughput, startup
from bench._verdict import Goal

# The quick variants: the same measurement, fewer rounds.
QUICK: dict[str, tuple[Callable[[list[str]], list[Goal]], list[str]]] = {
    "startup": (startup.main, ["--rounds", "5"]),
    "log_event": (log_event.main, ["--events", "20000", "--rounds", "5"]),
    "http_overhead": (http_overhead.main, ["--rounds", "1", "--seconds", "4"]),
    "sink_throughput": (sink_throughput.main, ["--records", "50000", "--rounds", "1"]),
    "otlp_pipeline": (otlp_pipeline.main, ["--spans", "10000", "--no-metrics"]),
}

# Goals beyond half of them when the guard was written (issue 16's open part): reported, not judged.
NOT_GUARDED = {
    "log_event line with the OTel bridge vs bare structlog": "6.7x bare today; half the goal is 5.0x",
    "otlp_pipeline spans/s through the Collector into Jaeger": "~10k spans/s today; half the goal is 15k",
    "http_overhead server CPU added per request": "+150-180 us today; half the goal is +110 us",
}


def main() -> int:
    failures: list[Goal] = []
    for name, (bench_main, quick_args) in QUICK.items():
        print(f"== bench/{name}.py {' '.join(quick_args)}", flush=True)
        for goal in bench_main(quick_args):
            if goal.name in NOT_GUARDED:
                print(f"   not guarded: {goal.name} ({NOT_GUARDED[goal.name]})")
            elif not goal.within_half:
                failures.append(goal)
    print()
    for goal in failures:
        print(f"REGRESSION {goal.line()} -- below half the goal", file=sys.stderr)
    print(f"guard: {'failed' if failures else 'every guarded ratio within half its goal'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
