"""docker-compose.yml (Docker does not run here): its structure, the files it mounts, and that its service names
and ports agree with the configs the programs read (collector-config.yaml, prometheus/*.yml, jaeger/config.yaml,
grafana provisioning)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import REPO

pytestmark = pytest.mark.integration  # starts real processes and services: `make test`, not `make check`

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def _env_default(text: str, variable: str) -> str:
    """The default of `${env:VARIABLE:-default}` in a Collector/Jaeger config file."""
    match = re.search(r"\$\{env:" + variable + r":-([^}]+)\}", text)
    assert match, f"{variable} has no default"
    return match.group(1)


def _published(service: str) -> set[int]:
    return {int(str(port).split(":")[-1].split("/")[0]) for port in SERVICES[service].get("ports", [])}


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("http://").partition(":")
    return host, int(port.split("/")[0])


def test_the_stack_has_every_service() -> None:
    expected = {"postgres", "otel-collector", "prometheus", "alertmanager", "grafana", "jaeger", "rag-app"}
    assert expected <= set(SERVICES)
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


def test_every_mounted_file_exists_and_builds_have_a_dockerfile() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name} uses undeclared volume {source}"
        if "build" in service:
            dockerfile = (REPO / service["build"] / "Dockerfile").read_text()
            for line in dockerfile.splitlines():
                if line.startswith("COPY ") and "--from=" not in line:
                    for source in line.split()[1:-1]:
                        assert (REPO / source).exists(), f"Dockerfile copies missing {source}"


def test_the_collector_image_matches_our_distribution_and_config() -> None:
    manifest = yaml.safe_load((REPO / "collector" / "builder-config.yaml").read_text())
    collector = SERVICES["otel-collector"]
    assert collector["image"].endswith(":" + manifest["dist"]["version"]), "same Collector release as our build"
    config = (REPO / "collector-config.yaml").read_text()
    mounted = {volume.split(":")[1] for volume in collector["volumes"]}
    assert any(f"--config={path}" in collector["command"] for path in mounted)
    published = _published("otel-collector")
    for variable in (
        "OTEL_RAG_COLLECTOR_OTLP_GRPC_ENDPOINT",
        "OTEL_RAG_COLLECTOR_OTLP_HTTP_ENDPOINT",
        "OTEL_RAG_COLLECTOR_PROMETHEUS_ENDPOINT",
        "OTEL_RAG_COLLECTOR_HEALTH_ENDPOINT",
    ):
        assert _host_port(_env_default(config, variable))[1] in published, variable
    assert int(_env_default(config, "OTEL_RAG_COLLECTOR_TELEMETRY_PORT")) in published
    storage = _env_default(config, "OTEL_RAG_COLLECTOR_STORAGE_DIR")
    assert any(volume.endswith(":" + storage) for volume in collector["volumes"]), "the trace queue survives restarts"
    # traces go to Jaeger's OTLP gRPC port
    backend_host, backend_port = _host_port(collector["environment"]["OTEL_RAG_TRACES_BACKEND"])
    jaeger_config = (REPO / "jaeger" / "config.yaml").read_text()
    assert backend_host == "jaeger"
    assert _host_port(_env_default(jaeger_config, "JAEGER_OTLP_GRPC_ENDPOINT"))[1] == backend_port


def test_prometheus_scrapes_and_alerts_what_compose_runs() -> None:
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    collector_config = (REPO / "collector-config.yaml").read_text()
    ports = {
        "otel-collector": _host_port(_env_default(collector_config, "OTEL_RAG_COLLECTOR_PROMETHEUS_ENDPOINT"))[1],
        "otel-collector-self": int(_env_default(collector_config, "OTEL_RAG_COLLECTOR_TELEMETRY_PORT")),
    }
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    for job, port in ports.items():
        assert jobs[job] == [f"otel-collector:{port}"], job
    mounted = {Path(volume.split(":")[1]).name for volume in SERVICES["prometheus"]["volumes"]}
    assert set(config["rule_files"]) <= mounted, "the rules file must be mounted beside prometheus.yml"
    assert "--enable-feature=exemplar-storage" in SERVICES["prometheus"]["command"], "exemplars link to traces"
    alertmanager = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
    host, port = _host_port(alertmanager)
    assert host in SERVICES and port in _published(host)


def test_grafana_datasources_point_at_compose_services() -> None:
    sources = yaml.safe_load((REPO / "grafana" / "provisioning" / "datasources" / "otel-rag.yaml").read_text())
    for source in sources["datasources"]:
        host, port = _host_port(source["url"])
        assert host in SERVICES, source["name"]
        if host != "postgres":
            assert port in _published(host), source["name"]
    mounts = {volume.split(":")[1] for volume in SERVICES["grafana"]["volumes"]}
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= mounts


def test_the_app_sends_to_the_collector_and_the_store() -> None:
    environment = SERVICES["rag-app"]["environment"]
    host, port = _host_port(environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
    collector_config = (REPO / "collector-config.yaml").read_text()
    assert host == "otel-collector"
    assert port == _host_port(_env_default(collector_config, "OTEL_RAG_COLLECTOR_OTLP_HTTP_ENDPOINT"))[1]
    assert environment["OTEL_METRICS_EXPORTER"] == "otlp", "multi-worker safe: metrics through the Collector"
    assert "@postgres:5432/" in environment["OTEL_RAG_POSTGRES_DSN"]
    # the debug page: a token, a store to read, and links that open Jaeger's published UI
    assert environment["OTEL_RAG_DEBUG_TOKEN"] and "@postgres:5432/" in environment["OTEL_RAG_DEBUG_DSN"]
    viewer = environment["OTEL_RAG_TRACE_VIEWER_URL"]
    assert "{trace_id}" in viewer and _host_port(viewer.split("/trace/")[0])[1] in _published("jaeger")
