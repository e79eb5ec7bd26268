"""prometheus/: the config and rules load in real promtool, every alert is unit-tested, documented and routable."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.support.processes import REPO
from tests.support.stack import PROMTOOL, require

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`

PROMETHEUS_DIR = REPO / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require(PROMTOOL), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60)


def _alerts() -> list[dict[str, object]]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yaml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules_and_the_config() -> None:
    rules = _promtool("check", "rules", "alerts.yaml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in rules.stdout
    config = _promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", "alerts.test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yaml").read_text())["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else silent).add(check["alertname"])
        # A case that feeds the same metric for a healthy and an unhealthy job proves silence too: promtool
        # compares the whole list of firing alerts, so the healthy one must be absent.
        if len({series["series"].split("{")[0] for series in case["input_series"]}) < len(case["input_series"]):
            silent.update(check["alertname"] for check in case["alert_rule_test"])
    names = {str(rule["alert"]) for rule in _alerts()}
    assert names - fired == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown staying silent"


def test_each_alert_has_a_summary_routing_labels_and_a_runbook_section() -> None:
    runbooks = (REPO / "docs" / "RUNBOOKS.md").read_text()
    anchors = {heading.strip().lower() for heading in re.findall(r"^## (.+)$", runbooks, re.M)}
    routes = yaml.safe_load((PROMETHEUS_DIR / "alertmanager.yml").read_text())
    receivers = {receiver["name"] for receiver in routes["receivers"]}
    assert routes["route"]["receiver"] in receivers
    assert {route["receiver"] for route in routes["route"]["routes"]} <= receivers
    for rule in _alerts():
        labels = rule["labels"]
        annotations = rule["annotations"]
        assert isinstance(labels, dict) and isinstance(annotations, dict)
        assert labels["severity"] in {"page", "ticket"}, rule["alert"]
        assert labels["team"] in {"rag", "observability"}, rule["alert"]
        assert annotations["summary"], rule["alert"]
        anchor = str(annotations["runbook_url"]).rsplit("#", 1)[1]
        assert str(annotations["runbook_url"]).split("#")[0].endswith("docs/RUNBOOKS.md")
        assert anchor == str(rule["alert"]).lower() and anchor in anchors, f"no runbook section for {rule['alert']}"


def test_alertmanager_config_is_valid() -> None:
    result = subprocess.run(
        [require("/usr/bin/amtool"), "check-config", str(PROMETHEUS_DIR / "alertmanager.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
