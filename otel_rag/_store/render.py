"""Plain-text views of query results for the terminal: the trace waterfall, error lists, cost tables, log lines."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from otel_rag._store.queries import CostLine, ErrorEntry, LogLine, TraceReport, TraceSummary

__all__ = ["render_cost", "render_errors", "render_logs", "render_trace", "render_traces"]

_BAR_WIDTH = 40


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:.6f}" if value == 0 or value >= 0.0001 else f"${value:.2e}"


def _clock(value: dt.datetime) -> str:
    return value.astimezone().strftime("%H:%M:%S.%f")[:-3]


def _bar(offset_ms: float, duration_ms: float, total_ms: float) -> str:
    scale = _BAR_WIDTH / total_ms if total_ms > 0 else 0
    start = min(_BAR_WIDTH - 1, int(offset_ms * scale))
    length = max(1, round(duration_ms * scale))
    length = min(length, _BAR_WIDTH - start)
    return " " * start + "█" * length + " " * (_BAR_WIDTH - start - length)


def render_trace(report: TraceReport, with_logs: bool = True) -> str:
    lines = [
        f"trace {report.trace_id}  {report.start.astimezone().isoformat(timespec='milliseconds')}",
        f"  {len(report.spans)} spans, {report.duration_ms:.1f} ms, services: {', '.join(report.services) or '-'}"
        f", users: {', '.join(report.user_ids) or '-'}",
        f"  tokens: {report.input_tokens} in / {report.output_tokens} out, cost: {_money(report.cost_usd)}"
        f", errors: {report.errors}, slowest stage: {report.slowest_stage or '-'}",
        "",
        f"  {'offset ms':>10} {'duration ms':>11}  {'':<{_BAR_WIDTH}}  span",
    ]
    for span in report.spans:
        marker = "✗" if span.status == "ERROR" else " "
        name = "  " * span.depth + span.name
        extra = []
        if span.input_tokens or span.output_tokens:
            extra.append(f"{span.input_tokens or 0}/{span.output_tokens or 0} tok")
        if span.cost_usd is not None:
            extra.append(_money(span.cost_usd))
        if span.status == "ERROR" and span.status_message:
            extra.append(span.status_message)
        suffix = f"  [{', '.join(extra)}]" if extra else ""
        lines.append(
            f"{marker} {span.offset_ms:>10.1f} {span.duration_ms:>11.1f}  "
            f"{_bar(span.offset_ms, span.duration_ms, report.duration_ms)}  {name}{suffix}"
        )
        if with_logs:
            indent = " " * (27 + _BAR_WIDTH) + "  " * span.depth
            lines.extend(f"{indent}  · {_log_text(line)}" for line in span.logs)
    if with_logs and report.orphan_logs:
        lines.append("")
        lines.append("  logs of this trace without a stored span:")
        lines.extend(f"    · {_log_text(line)}" for line in report.orphan_logs)
    return "\n".join(lines)


def _log_text(line: LogLine) -> str:
    extras = {k: v for k, v in line.attributes.items() if k not in ("enduser.id", "exception.stacktrace")}
    shown = " ".join(f"{k}={v}" for k, v in list(extras.items())[:6])
    return f"{_clock(line.time)} {line.level:<7} {line.message or ''} {shown}".rstrip()


def render_errors(entries: Sequence[ErrorEntry]) -> str:
    if not entries:
        return "no errors in that range"
    lines = [f"{'time':<26} {'source':<6} {'trace id':<32}  {'where':<28} message"]
    for entry in entries:
        where = (entry.name or "")[:28]
        message = " ".join(filter(None, [entry.error_type, _first_line(entry.message)]))[:120]
        lines.append(
            f"{entry.time.astimezone().isoformat(timespec='milliseconds'):<26} {entry.source:<6} "
            f"{entry.trace_id or '-':<32}  {where:<28} {message}"
        )
    return "\n".join(lines)


def render_traces(found: Sequence[TraceSummary]) -> str:
    if not found:
        return "no requests in that range"
    lines = [f"{'time':<26} {'trace id':<32} {'duration':>10}  {'status':<6} {'user':<16} request"]
    for trace in found:
        status = "error" if trace.errors or trace.status == "ERROR" else "ok"
        lines.append(
            f"{trace.time.astimezone().isoformat(timespec='milliseconds'):<26} {trace.trace_id:<32} "
            f"{trace.duration_ms:>8.0f}ms  {status:<6} {(trace.user_id or '-')[:16]:<16} {trace.service}: {trace.name}"
        )
    return "\n".join(lines)


def render_cost(trace_id: str, lines: Sequence[CostLine]) -> str:
    total_cost = [line.cost_usd for line in lines if line.cost_usd is not None]
    out = [
        f"cost of trace {trace_id}",
        f"  {'stage':<28} {'spans':>5} {'in tok':>8} {'out tok':>8} {'cost':>12}  models",
    ]
    for line in lines:
        out.append(
            f"  {line.stage[:28]:<28} {line.spans:>5} {line.input_tokens:>8} {line.output_tokens:>8} "
            f"{_money(line.cost_usd):>12}  {', '.join(line.models)}"
        )
    out.append(
        f"  {'total':<28} {sum(x.spans for x in lines):>5} {sum(x.input_tokens for x in lines):>8} "
        f"{sum(x.output_tokens for x in lines):>8} {_money(sum(total_cost) if total_cost else None):>12}"
    )
    return "\n".join(out)


def render_logs(lines: Sequence[LogLine]) -> str:
    if not lines:
        return "no log lines in that range"
    return "\n".join(
        f"{line.time.astimezone().isoformat(timespec='milliseconds')} {line.level:<8} {line.service:<16} "
        f"{line.trace_id or '-':<32} {_message_and_failure(line)}"
        for line in lines
    )


def _first_line(text: str | None) -> str:
    """A message as one line of a listing (a server's exception line ends in a newline; tracebacks span many)."""
    return (text or "").strip().split("\n", 1)[0]


def _message_and_failure(line: LogLine) -> str:
    """The message's first line, and what failed when the line says (error.type, exception.type and .message)."""
    text = _first_line(line.message)
    attributes = line.attributes
    failure = attributes.get("exception.type") or attributes.get("error.type")
    if failure:
        detail = _first_line(str(attributes.get("exception.message") or ""))[:200]
        text += f"  [{failure}: {detail}]" if detail else f"  [{failure}]"
    return text
