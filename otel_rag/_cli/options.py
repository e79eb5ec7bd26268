"""Options several commands share, worded once."""

from __future__ import annotations

import argparse

__all__ = ["time_window"]


def time_window(command: argparse.ArgumentParser, since: str) -> None:
    """The --since/--until pair of every command over a time range (relative, a clock time today, or ISO)."""
    forms = "-15m, -2h, -1d, 15:00 (today) or ISO"
    command.add_argument("--since", default=since, help=f"start: {forms} (default {since})")
    command.add_argument("--until", default="now", help="end, same forms (default now)")
