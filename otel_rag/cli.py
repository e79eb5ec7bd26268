"""The `otel-rag` command: `config` (the effective configuration) and `doctor` (are the backends reachable).

Every command takes `--json`. Exit status: 0 fine, 1 a check failed, 2 bad input or bad configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .config import CATALOGUE, ConfigError, load_settings, masked
from .doctor import run_checks

__all__ = ["main"]


def _config(args: argparse.Namespace) -> int:
    try:
        load_settings()
        error = None
    except ConfigError as exc:
        error = exc
    rows: list[dict[str, Any]] = []
    for setting in CATALOGUE:
        raw = os.environ.get(setting.env)
        source = "env" if raw not in (None, "") else "default"
        value = raw if source == "env" else setting.default
        rows.append(
            {
                "name": setting.env,
                "value": masked(setting, value),
                "source": source,
                "standard": setting.standard,
                "help": setting.help,
                "accepted": setting.accepted,
            }
        )
    if args.json:
        print(json.dumps({"settings": rows, "error": str(error) if error else None}, indent=2))
    else:
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            value = "(unset)" if row["value"] is None else row["value"] or "(empty)"
            print(f"{row['name']:<{width}}  {value}  [{row['source']}]")
        if error:
            print(f"\nerror: {error}", file=sys.stderr)
    return 2 if error else 0


def _doctor(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        if args.json:
            print(json.dumps({"error": str(error), "checks": []}, indent=2))
        else:
            print(f"configuration: FAIL  {error}")
        return 2
    results = run_checks(settings)
    if args.json:
        print(json.dumps({"error": None, "checks": [vars(result) for result in results]}, indent=2))
    else:
        print("configuration: ok")
        for result in results:
            print(f"{result.name}: {result.status.upper():<4}  {result.detail}")
    return 1 if any(result.status == "fail" for result in results) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-rag", description=__doc__.splitlines()[0] if __doc__ else "")
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="print the effective configuration (secrets masked)")
    config.add_argument("--json", action="store_true", help="machine-readable output")
    config.set_defaults(run=_config)
    doctor = commands.add_parser("doctor", help="check every configured backend and say what is wrong")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(run=_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
