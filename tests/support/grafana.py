"""Grafana's query macros and template variables, replaced as Grafana would for a test's time range."""

from __future__ import annotations


def promql_for_test(expr: str) -> str:
    """A panel's PromQL as Grafana would send it for the last 15 minutes, with every service selected."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__range", "15m")
        .replace("$__interval", "15s")
        .replace('=~"$job"', '=~".*"')
    )


def sql_for_test(sql: str) -> str:
    """A panel's SQL for the last hour, every service selected (Grafana's $__timeFilter and ${job:regex})."""
    return sql.replace("$__timeFilter(time)", "time > now() - interval '1 hour'").replace("${job:regex}", ".*")
