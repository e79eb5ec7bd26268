"""`otel-rag retention run`, `otel-rag retention status` and `otel-rag restore`: the log lifecycle from a terminal,
cron or a CronJob.

Run it with the maintainer role (it archives, deletes, rewrites and drops partitions); the writer and reader roles
cannot. Exit status: 0 done (or nothing due), 1 another run holds the lock or a step failed (nothing unarchived
left Postgres; run again), 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any, TextIO

import psycopg

from otel_rag._config.settings import ConfigError, Settings, load_settings

__all__ = ["add_retention_commands"]


def _policy(settings: Settings) -> Any:
    from otel_rag._store.retention import Policy

    return Policy(settings.hot_days, settings.warm_days, settings.warm_sample_ratio, settings.archive_days)


def _now(text: str | None) -> dt.datetime:
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError("--now", text, "an ISO date or time, e.g. 2026-11-30 or 2026-11-30T12:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _store_settings(args: argparse.Namespace) -> tuple[Settings, str]:
    settings = load_settings()
    dsn = args.dsn or settings.postgres_dsn
    if not dsn:
        raise ConfigError("OTEL_RAG_POSTGRES_DSN", "", "a postgresql:// URL of the maintainer role (or pass --dsn)")
    return settings, dsn


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


class ProgressBar:
    """The run's progress on stderr: on a terminal one line redrawn in place (the day, its action and a bar of the
    rows exported so far); otherwise one line per day, for logs."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.plan: Any = None
        self.prefix = ""
        self.done = 0

    def day(self, number: int, total: int, plan: Any) -> None:
        if self.live and self.plan is not None:
            self.stream.write("\n")  # the finished day's line stays
        self.plan, self.done = plan, 0
        self.prefix = f"[{number}/{total}] {plan.day} {plan.action}"
        if self.live:
            self._draw()
        else:
            print(self.prefix, file=self.stream, flush=True)

    def rows(self, count: int) -> None:
        self.done += count
        if self.live:
            self._draw()

    def close(self) -> None:
        if self.live and self.plan is not None:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        total = max(1, sum(self.plan.rows.values()))
        filled = min(self.WIDTH, self.WIDTH * self.done // total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r{self.prefix:<40} [{bar}] {self.done:,}/{total:,} rows")
        self.stream.flush()


def _run(args: argparse.Namespace) -> int:
    try:
        from otel_rag._store.archive import Archive
        from otel_rag._store.retention import AlreadyRunning, run
    except ImportError as missing:  # pragma: no cover - depends on the installed extras
        print(f"otel-rag retention needs pyarrow ({missing.name}): pip install 'otel-rag[archive]'", file=sys.stderr)
        return 2
    settings, dsn = _store_settings(args)
    archive = Archive(settings.archive_url) if settings.archive_url else None
    progress = None if args.json else ProgressBar(sys.stderr)
    try:
        report = run(
            dsn,
            settings.postgres_schema,
            _policy(settings),
            archive,
            _now(args.now),
            dry_run=args.dry_run,
            progress=progress,
        )
        if progress:
            progress.close()
    except AlreadyRunning as error:
        print(f"otel-rag: {error}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError, psycopg.Error) as error:  # the archive or the store failed mid-run
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(
            f"otel-rag: retention stopped: {first_line}; nothing left Postgres unarchived, run again", file=sys.stderr
        )
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    due = [day for day in report.days if day.action != "none"]
    heading = "would do" if report.dry_run else "done"
    print(f"retention ({heading}): {len(due)} of {len(report.days)} days due")
    for day in due:
        rows = sum(day.rows.values())
        kept = f", {day.rows_kept} rows kept" if day.rows_kept is not None else ""
        freed = f", frees about {_size(day.bytes_freed)}" if day.bytes_freed is not None else ""
        print(f"  {day.day}  {day.tier:<7} {day.action:<13} {rows} rows in Postgres{kept}, {_size(day.bytes)}{freed}")
    if report.dry_run:
        print(f"would free about {_size(report.bytes_freed)}")
    else:
        print(
            f"archived {report.archived_rows} rows, thinned {report.thinned_rows}, dropped {report.dropped_rows}, "
            f"expired {report.expired_objects} objects, freed {_size(report.bytes_freed)}"
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    from otel_rag._store.retention import day_status

    settings, dsn = _store_settings(args)
    days, last = day_status(dsn, settings.postgres_schema, _policy(settings), _now(args.now).date())
    if args.json:
        document = {
            "days": [
                {"day": d.day.isoformat(), "tier": d.tier, "state": d.state, "rows": d.rows, "bytes": d.bytes}
                for d in days
            ],
            "last_run": {
                key: (value.isoformat() if hasattr(value, "isoformat") else value) for key, value in last.items()
            }
            if last
            else None,
        }
        print(json.dumps(document, indent=2, default=str))
        return 0
    print(f"{'day':<10}  {'tier':<7} {'logs':>9} {'spans':>9}  state (logs/spans)")
    for d in days:
        states = "/".join(d.state[s] or "-" for s in ("logs", "spans"))
        print(f"{d.day}  {d.tier:<7} {d.rows.get('logs', 0):>9} {d.rows.get('spans', 0):>9}  {states}")
    if last:
        outcome = "ok" if last["ok"] else f"FAILED: {last['error']}" if last["ok"] is False else "running or killed"
        print(f"last run: {last['started_at']:%Y-%m-%d %H:%M:%S} UTC, {outcome}")
    else:
        print("last run: never")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from otel_rag._store.archive import Archive
    from otel_rag._store.retention import AlreadyRunning, restore

    settings, dsn = _store_settings(args)
    if not settings.archive_url:
        raise ConfigError("OTEL_RAG_ARCHIVE_URL", "", "s3://bucket[/prefix] or file:///folder: the archive to read")
    try:
        day = dt.date.fromisoformat(args.day)
    except ValueError:
        raise ConfigError("--day", args.day, "a date, e.g. 2026-11-03") from None
    try:
        inserted = restore(dsn, settings.postgres_schema, Archive(settings.archive_url), day)
    except (AlreadyRunning, LookupError) as error:
        print(f"otel-rag: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"day": day.isoformat(), "inserted": inserted}))
    else:
        print(
            f"restored {day}: {inserted['logs']} log lines and {inserted['spans']} spans inserted (rows already in"
            " Postgres were kept as they were); the next retention run applies the policy to the day again"
        )
    return 0


def add_retention_commands(commands: Any, store_options: Any) -> None:
    """`retention run`, `retention status` and `restore` under the main parser's subcommands."""
    retention = commands.add_parser("retention", help="the log lifecycle: archive, thin to the warm set, drop")
    actions = retention.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="do what is due (archive, thin, drop, expire)")
    run.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    run.set_defaults(run=_run)
    status = actions.add_parser("status", help="per day: tier, state, rows in Postgres; the last run")
    status.set_defaults(run=_status)
    for command in (run, status):
        store_options(command)
        command.add_argument("--now", help="the time to plan from (ISO; default: now, UTC)")
    restore = commands.add_parser("restore", help="bring an archived day back into Postgres (idempotent)")
    restore.add_argument("--day", required=True, help="the day (UTC), e.g. 2026-11-03")
    store_options(restore)
    restore.set_defaults(run=_restore)
