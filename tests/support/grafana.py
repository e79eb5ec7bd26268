"""The repository's Grafana dashboards for the tests: their files, their query targets, and Grafana's query macros
and template variables replaced as Grafana would for a test's time range."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.processes import REPO

DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    dashboard = json.loads(path.read_text())
    assert isinstance(dashboard, dict), path
    return dashboard


def dashboard_targets() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard file name, panel, target) for every query target of every dashboard."""
    for path in DASHBOARDS:
        for panel in load_dashboard(path)["panels"]:
            for target in panel["targets"]:
                yield path.name, panel, target


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
