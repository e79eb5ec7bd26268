"""grafana/: each dashboard is well-formed for Grafana's provisioning, and every PromQL expression parses.

Grafana cannot run here; tests/test_observability_stack.py runs every panel's query on a real Prometheus after a
load. This file checks what needs no server: structure, datasource references, template variables, trace links,
and the PromQL syntax (through promtool, which parses each expression as a recording rule).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.grafana import DASHBOARDS, dashboard_targets, load_dashboard, promql_for_test
from tests.support.processes import REPO
from tests.support.stack import PROMTOOL, require

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`

PROVISIONING = REPO / "grafana" / "provisioning"
TOPICS = {"ingestion", "errors", "latency", "llm", "quality", "pipeline"}


def _datasources() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((PROVISIONING / "datasources" / "otel-rag.yaml").read_text())
    return {source["uid"]: source for source in config["datasources"]}


def test_the_dashboards_cover_each_topic_once() -> None:
    assert {path.stem for path in DASHBOARDS} == TOPICS
    uids = [load_dashboard(path)["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids) and all(len(uid) <= 40 for uid in uids)


def test_provisioning_points_at_the_dashboards_and_the_three_datasources() -> None:
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "otel-rag.yaml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    sources = _datasources()
    assert {source["type"] for source in sources.values()} == {
        "prometheus",
        "jaeger",
        "grafana-postgresql-datasource",
    }
    prometheus = sources["prometheus"]
    destinations = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert destinations == [{"name": "trace_id", "datasourceUid": "jaeger"}], "exemplars must open Jaeger"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_dashboard_structure(path: Path) -> None:
    dashboard = load_dashboard(path)
    sources = _datasources()
    assert dashboard["title"].startswith("otel-rag / ") and "otel-rag" in dashboard["tags"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["time"]["from"].startswith("now-")
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        assert panel["type"] in {"timeseries", "stat", "table"} and panel["title"]
        assert panel["datasource"]["uid"] in sources, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids)
        for target in panel["targets"]:
            query = target.get("expr") or target.get("rawSql")
            assert query, f"{panel['title']} has a target without a query"
            used = set(re.findall(r"\$\{?(\w+)", query)) - {"__rate_interval", "__range", "__interval", "__timeFilter"}
            assert used <= variables, f"{panel['title']} uses undefined variables {used - variables}"


def test_latency_and_error_panels_link_points_to_traces() -> None:
    linked = []
    for path in DASHBOARDS:
        for panel in load_dashboard(path)["panels"]:
            for target in panel["targets"]:
                if "_bucket" in target.get("expr", "") and target.get("exemplar"):
                    linked.append(f"{path.stem}: {panel['title']}")
            for override in panel["fieldConfig"]["overrides"]:
                for prop in override["properties"]:
                    if prop["id"] == "links":
                        assert all("${__value.raw}" in link["url"] for link in prop["value"])
                        linked.append(f"{path.stem}: {panel['title']} (table)")
    assert {entry.split(":")[0] for entry in linked} >= {"errors", "latency", "ingestion", "llm"}


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    expressions = [promql_for_test(target["expr"]) for _, _, target in dashboard_targets() if "expr" in target]
    rules = {
        "groups": [
            {"name": "dashboards", "rules": [{"record": f"panel:{i}", "expr": e} for i, e in enumerate(expressions)]}
        ]
    }
    (tmp_path / "panels.yaml").write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [require(PROMTOOL), "check", "rules", str(tmp_path / "panels.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout
