"""Start-up of `opentelemetry-instrument python empty.py`: the stock distro vs otel-rag, same venv, same run.

Both launchers load every instrumentation installed in this venv; exporters are `none` so only the import and
set-up cost is measured. Rounds alternate between the variants; the figures are the medians of wall time and of
the child's peak resident memory (from wait4). Goal (issue 16): otel-rag <= stock on both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._verdict import Goal, report

BIN = Path(sys.executable).parent
VARIANTS = {
    "stock distro": {"OTEL_PYTHON_DISTRO": "distro", "OTEL_PYTHON_CONFIGURATOR": "configurator"},
    "otel-rag": {"OTEL_PYTHON_DISTRO": "otel_rag", "OTEL_PYTHON_CONFIGURATOR": "otel_rag"},
}


def run_once(script: Path, variant: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak MiB) of one launch."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(variant)
    env.update({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"})
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(script)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"the launcher exited with {process.returncode}")
    return elapsed, usage.ru_maxrss / 1024


def measure(rounds: int) -> dict[str, tuple[float, float]]:
    """Median (seconds, MiB) per variant."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "empty.py"
        script.write_text("")
        for variant in VARIANTS.values():  # warm the page cache and the .pyc files
            run_once(script, variant)
        for _ in range(rounds):
            for name, variant in VARIANTS.items():
                samples[name].append(run_once(script, variant))
    return {
        name: (statistics.median(s for s, _ in runs), statistics.median(m for _, m in runs))
        for name, runs in samples.items()
    }


def main(argv: list[str] | None = None) -> list[Goal]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    figures = measure(args.rounds)
    stock_s, stock_mib = figures["stock distro"]
    ours_s, ours_mib = figures["otel-rag"]
    print(f"median of {args.rounds} launches, exporters none:")
    for name, (seconds, mib) in figures.items():
        print(f"  {name:<13} {seconds:6.3f} s  {mib:6.1f} MiB peak")
    return report(
        [
            Goal("startup time vs stock distro", ours_s / stock_s, 1.0, higher_is_better=False),
            Goal("startup peak memory vs stock distro", ours_mib / stock_mib, 1.0, higher_is_better=False),
        ]
    )


if __name__ == "__main__":
    main()
