"""The `otel-rag` command: configuration (`config`, `doctor`), the store's schema and lifecycle (`migrate`,
`partitions`, `retention`, `restore`), the questions (`trace`, `errors`, `cost`, `logs`, `quality`, `compare`)
and `health`.

Every command takes `--json`. Exit status: 0 fine, 1 a check failed or nothing found, 2 bad input or bad
configuration. Store commands read OTEL_RAG_POSTGRES_DSN (the reader role is enough for the questions) or `--dsn`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from otel_rag._cli.compare import add_compare_command
from otel_rag._cli.doctor import run_checks
from otel_rag._cli.health import add_health_command
from otel_rag._cli.options import time_window
from otel_rag._cli.quality import add_quality_command
from otel_rag._cli.retention import add_retention_commands
from otel_rag._config.settings import CATALOGUE, ConfigError, Settings, load_settings, masked
from otel_rag._store import queries, render
from otel_rag._store.migrate import drop_partitions_before, ensure_partitions, list_partitions, migrate
from otel_rag._store.queries import to_jsonable

__all__ = ["main"]


def _config(args: argparse.Namespace) -> int:
    warnings: tuple[str, ...] = ()
    try:
        warnings = load_settings().warnings
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
        document = {"settings": rows, "warnings": list(warnings), "error": str(error) if error else None}
        print(json.dumps(document, indent=2))
    else:
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            value = "(unset)" if row["value"] is None else row["value"] or "(empty)"
            print(f"{row['name']:<{width}}  {value}  [{row['source']}]")
        for warning in warnings:
            print(f"\nwarning: {warning}", file=sys.stderr)
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


def _store(args: argparse.Namespace) -> tuple[str, str]:
    """(dsn, schema) for a store command, from --dsn or the environment."""
    dsn, schema, _settings = _store_and_settings(args)
    return dsn, schema


def _store_and_settings(args: argparse.Namespace) -> tuple[str, str, Settings]:
    settings = load_settings()
    dsn = args.dsn or settings.postgres_dsn
    if not dsn:
        raise ConfigError("OTEL_RAG_POSTGRES_DSN", "", "a postgresql:// URL (or pass --dsn)")
    return dsn, settings.postgres_schema, settings


def _archive(settings: Settings) -> Any:
    """The configured archive, or None (not configured, or pyarrow not installed: said once on stderr)."""
    if not settings.archive_url:
        return None
    try:
        from otel_rag._store.archive import Archive

        return Archive(settings.archive_url)
    except RuntimeError as error:  # pyarrow missing
        print(f"otel-rag: the archive is not read: {error}", file=sys.stderr)
        return None


def _trace_from_archive(args: argparse.Namespace, question: Callable[[Any, str], Any]) -> Any:
    """Ask `question(connection, schema)` about a trace that is not in Postgres of the archived rows."""
    dsn, schema, settings = _store_and_settings(args)
    trace_id = queries.validate_trace_id(args.trace_id)
    archive = _archive(settings)
    if archive is None:
        raise queries.TraceNotFound(f"trace {trace_id} is not in the store (and no archive is configured)")
    from otel_rag._store.from_archive import load_trace, temporary_store

    with psycopg.connect(dsn) as connection, temporary_store(connection, schema) as temporary:
        if not load_trace(connection, schema, archive, trace_id):
            raise queries.TraceNotFound(f"trace {trace_id} is neither in the store nor in the archive")
        answer = question(connection, temporary)
    print(f"otel-rag: trace {trace_id} has left Postgres; read from the archive", file=sys.stderr)
    return answer


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(to_jsonable(data), indent=2) if args.json else text)


def _migrate(args: argparse.Namespace) -> int:
    dsn, schema = _store(args)
    applied = migrate(dsn, schema)
    with psycopg.connect(dsn, autocommit=True) as connection:
        today = dt.datetime.now(dt.UTC).date()
        created = ensure_partitions(connection, schema, today - dt.timedelta(days=1), today + dt.timedelta(days=3))
    names = [f"{m.version:04d}_{m.name}" for m in applied]
    _print(
        args,
        {"applied": names, "partitions_created": created},
        (f"applied: {', '.join(names)}" if names else "schema is up to date") + f"; partitions created: {created}",
    )
    return 0


def _partitions(args: argparse.Namespace) -> int:
    dsn, schema = _store(args)
    with psycopg.connect(dsn, autocommit=True) as connection:
        today = dt.datetime.now(dt.UTC).date()
        created = ensure_partitions(connection, schema, today, today + dt.timedelta(days=args.ahead))
        dropped = []
        if args.keep_days is not None:
            dropped = drop_partitions_before(connection, schema, today - dt.timedelta(days=args.keep_days))
        present = [f"{name}" for name, _day in list_partitions(connection, schema)]
    _print(
        args,
        {"created": created, "dropped": dropped, "partitions": present},
        f"created {created}, dropped {len(dropped)} ({', '.join(dropped) or '-'}); now: {', '.join(present)}",
    )
    return 0


def _trace(args: argparse.Namespace) -> int:
    dsn, schema = _store(args)
    try:
        report = queries.debug_trace(dsn, args.trace_id, schema)
    except queries.TraceNotFound:
        report = _trace_from_archive(
            args, lambda connection, temp: queries.debug_trace(connection, args.trace_id, temp)
        )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render.render_trace(report, with_logs=not args.no_logs))
    return 0


def _errors(args: argparse.Namespace) -> int:
    dsn, schema = _store(args)
    entries = queries.find_errors(dsn, args.user, since=args.since, until=args.until, schema=schema, limit=args.limit)
    _print(args, entries, render.render_errors(entries))
    return 0


def _traces(args: argparse.Namespace) -> int:
    dsn, schema = _store(args)
    found = queries.recent_traces(
        dsn,
        since=args.since,
        until=args.until,
        min_duration_ms=queries.parse_duration_ms(args.slower_than, "--slower-than"),
        errors_only=args.errors,
        schema=schema,
        limit=args.limit,
    )
    _print(args, found, render.render_traces(found))
    return 0


def _cost(args: argparse.Namespace) -> int:
    dsn, schema = _store(args)
    try:
        lines = queries.trace_cost(dsn, args.trace_id, schema)
    except queries.TraceNotFound:
        lines = _trace_from_archive(args, lambda connection, temp: queries.trace_cost(connection, args.trace_id, temp))
    _print(args, lines, render.render_cost(args.trace_id, lines))
    return 0


def _logs(args: argparse.Namespace) -> int:
    from otel_rag._store.from_archive import search_logs

    dsn, schema, settings = _store_and_settings(args)
    filters = {"service": args.service, "level": args.level, "grep": args.grep}
    with psycopg.connect(dsn) as connection:
        lines, boundary = search_logs(
            connection, schema, _archive(settings), since=args.since, until=args.until, limit=args.limit, **filters
        )
    if boundary is not None:
        print(f"otel-rag: lines before {boundary:%Y-%m-%d} read from the archive", file=sys.stderr)
    _print(args, lines, render.render_logs(lines))
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        from otel_rag.web._access import DebugConfig
        from otel_rag.web._server import serve
    except ImportError as missing:
        print(
            f"otel-rag serve needs FastAPI and uvicorn ({missing.name}): pip install 'otel-rag[web]'", file=sys.stderr
        )
        return 2
    config = DebugConfig.from_settings()
    if args.dsn:
        config = dataclasses.replace(config, dsn=args.dsn)
    if not config.dsn:
        raise ConfigError("OTEL_RAG_DEBUG_DSN", "", "a postgresql:// URL (or --dsn, or OTEL_RAG_POSTGRES_DSN)")
    serve(args.host, args.port, config)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-rag", description=__doc__.splitlines()[0] if __doc__ else "")
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="print the effective configuration (secrets masked)")
    config.add_argument("--json", action="store_true", help="machine-readable output")
    config.set_defaults(run=_config)
    doctor = commands.add_parser("doctor", help="check every configured backend and say what is wrong")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(run=_doctor)

    def store_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--json", action="store_true", help="machine-readable output")
        command.add_argument("--dsn", help="PostgreSQL URL (default: OTEL_RAG_POSTGRES_DSN)")

    def store_command(name: str, help_text: str, run: Any) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text)
        store_options(command)
        command.set_defaults(run=run)
        return command

    store_command("migrate", "apply pending schema migrations and create the coming days' partitions", _migrate)
    partitions = store_command("partitions", "create partitions ahead; drop whole days past retention", _partitions)
    partitions.add_argument("--ahead", type=int, default=3, help="days of partitions to create ahead (default 3)")
    partitions.add_argument("--keep-days", type=int, help="detach and drop partitions older than this many days")
    trace = store_command("trace", "one trace: span waterfall, logs per span, totals", _trace)
    trace.add_argument("trace_id", help="32 hexadecimal characters (the X-Trace-Id header)")
    trace.add_argument("--no-logs", action="store_true", help="spans only")
    errors = store_command("errors", "error spans and log lines of one user", _errors)
    errors.add_argument("--user", required=True, help="the user id (X-User-Id / enduser.id)")
    time_window(errors, "-24h")
    errors.add_argument("--limit", type=int, default=200)
    traces = store_command("traces", "requests (root spans) in a time range: the slow ones, the failed ones", _traces)
    traces.add_argument("--slower-than", help="only requests that took at least this long: 800ms, 2s, 1.5m")
    traces.add_argument("--errors", action="store_true", help="only requests with an error span")
    time_window(traces, "-1h")
    traces.add_argument("--limit", type=int, default=50, help="at most this many, newest first (default 50)")
    cost = store_command("cost", "cost and tokens of one trace, by stage", _cost)
    cost.add_argument("trace_id")
    logs = store_command("logs", "log lines in a time range", _logs)
    time_window(logs, "-1h")
    logs.add_argument("--service", help="only this service")
    logs.add_argument("--level", help="this level and above: debug, info, warning, error, critical")
    logs.add_argument("--grep", help="text contained in the message or attributes (case-insensitive)")
    logs.add_argument("--limit", type=int, default=1000)
    add_retention_commands(commands, store_options)
    add_health_command(commands, store_options)
    add_quality_command(commands, store_options)
    add_compare_command(commands, store_options)
    serve = commands.add_parser("serve", help="the debug page and its JSON API (token: OTEL_RAG_DEBUG_TOKEN)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    serve.add_argument(
        "--dsn", help="PostgreSQL URL, a reader role (default: OTEL_RAG_DEBUG_DSN, OTEL_RAG_POSTGRES_DSN)"
    )
    serve.set_defaults(run=_serve)
    return parser


def _join_relative_times(argv: Sequence[str]) -> list[str]:
    """`--since -15m` would read as an unknown option: make it `--since=-15m`."""
    joined: list[str] = []
    for token in argv:
        if (
            joined
            and joined[-1] in ("--since", "--until", "--before", "--after")
            and re.fullmatch(r"-\d+(\.\d+)?\s*[smhdw]", token)
        ):
            joined[-1] = f"{joined[-1]}={token}"
        else:
            joined.append(token)
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(_join_relative_times(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.run(args))
    except (queries.InvalidInput, ConfigError) as error:
        print(f"otel-rag: {error}", file=sys.stderr)
        return 2
    except queries.TraceNotFound as error:
        print(f"otel-rag: {error}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"otel-rag: cannot reach the store: {first_line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
