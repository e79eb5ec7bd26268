"""The observability stack as real local processes: our Collector, Jaeger v2, Prometheus and Alertmanager.

Each runs from the repository's own config files (collector-config.yaml, jaeger/config.yaml, prometheus/*.yml)
with only addresses and intervals changed for the test, on free ports of 127.0.0.1, and is stopped afterwards.
The Collector and Jaeger are built from Go modules by the repository's scripts (reused when already built);
Prometheus, promtool and Alertmanager are Debian's (`make test` installs them). A missing program fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from otel_rag.testing import free_port
from tests.support.processes import REPO

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


def _built(script: str) -> str:
    result = subprocess.run([str(REPO / script)], cwd=REPO, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise AssertionError(f"{script} failed:\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]


def collector_binary() -> str:
    return _built("collector/build.sh")


def jaeger_binary() -> str:
    return _built("tools/build-jaeger.sh")


def require(program: str) -> str:
    if not Path(program).exists():
        raise AssertionError(f"{program} is missing: run `make system-deps` (Debian prometheus, alertmanager)")
    return program


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError, KeyError, ValueError) as error:
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


class Service:
    """One program with its output in a log file; stopped with SIGTERM (SIGKILL after 15 s)."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.workdir = workdir
        self.env = {**os.environ, **(env or {})}
        self.log_path = workdir / f"{name}.log"
        self.start()

    def start(self) -> None:
        """Start (or start again, with the same addresses) and wait until it answers."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.workdir,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        """Subclasses wait for their readiness endpoint."""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            return httpx.get(url, timeout=2).status_code == 200

        try:
            wait_until(ready, timeout, f"{self.name} at {url}")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.log()}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class Jaeger(Service):
    def __init__(self, workdir: Path) -> None:
        self.otlp_grpc = f"127.0.0.1:{free_port()}"
        self.query_url = f"http://127.0.0.1:{free_port()}"
        env = {
            "JAEGER_OTLP_GRPC_ENDPOINT": self.otlp_grpc,
            "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
            "JAEGER_QUERY_HTTP_ENDPOINT": self.query_url.removeprefix("http://"),
            "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        }
        super().__init__("jaeger", [jaeger_binary(), f"--config={REPO / 'jaeger' / 'config.yaml'}"], workdir, env)

    def wait_ready(self) -> None:
        self.wait_http(self.query_url + "/api/services")

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        response = httpx.get(f"{self.query_url}/api/traces/{trace_id}", timeout=5)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data = response.json().get("data") or []
        return data[0] if data else None


class Collector(Service):
    """Our Collector distribution running collector-config.yaml; `traces_backend` is host:port of OTLP gRPC."""

    def __init__(self, workdir: Path, traces_backend: str) -> None:
        self.otlp_http = f"http://127.0.0.1:{free_port()}"
        self.otlp_grpc = f"127.0.0.1:{free_port()}"
        self.metrics_target = f"127.0.0.1:{free_port()}"
        self.telemetry_port = free_port()
        self.telemetry_target = f"127.0.0.1:{self.telemetry_port}"
        self.health = f"127.0.0.1:{free_port()}"
        self.storage_dir = workdir / "collector-queue"
        env = {
            "OTEL_RAG_TRACES_BACKEND": traces_backend,
            "OTEL_RAG_COLLECTOR_OTLP_GRPC_ENDPOINT": self.otlp_grpc,
            "OTEL_RAG_COLLECTOR_OTLP_HTTP_ENDPOINT": self.otlp_http.removeprefix("http://"),
            "OTEL_RAG_COLLECTOR_PROMETHEUS_ENDPOINT": self.metrics_target,
            "OTEL_RAG_COLLECTOR_TELEMETRY_HOST": "127.0.0.1",
            "OTEL_RAG_COLLECTOR_TELEMETRY_PORT": str(self.telemetry_port),
            "OTEL_RAG_COLLECTOR_HEALTH_ENDPOINT": self.health,
            "OTEL_RAG_COLLECTOR_STORAGE_DIR": str(self.storage_dir),
        }
        argv = [collector_binary(), f"--config={REPO / 'collector-config.yaml'}"]
        super().__init__("otelcol-rag", argv, workdir, env)

    def wait_ready(self) -> None:
        self.wait_http(f"http://{self.health}/")

    def metrics_text(self) -> str:
        return httpx.get(f"http://{self.metrics_target}/metrics", timeout=5).text


class WebhookReceiver:
    """A local HTTP server that keeps every JSON body POSTed to it (Alertmanager's webhook notifications)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager(Service):
    """prometheus/alertmanager.yml with every webhook pointed at `webhook_url` and short grouping waits."""

    def __init__(self, workdir: Path, webhook_url: str) -> None:
        config = yaml.safe_load((REPO / "prometheus" / "alertmanager.yml").read_text())
        for receiver in config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = webhook_url + "/" + receiver["name"]
        config["route"].update(group_wait="1s", group_interval="2s")
        path = workdir / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        argv = [
            require(ALERTMANAGER),
            f"--config.file={path}",
            f"--storage.path={workdir / 'alertmanager-data'}",
            f"--web.listen-address={self.url.removeprefix('http://')}",
            "--cluster.listen-address=",
        ]
        super().__init__("alertmanager", argv, workdir)

    def wait_ready(self) -> None:
        self.wait_http(self.url + "/-/ready")


def fast_rules(workdir: Path, for_duration: str = "5s") -> Path:
    """prometheus/alerts.yaml with each rule's `for:` shortened, so a test waits seconds; expressions unchanged."""
    rules = yaml.safe_load((REPO / "prometheus" / "alerts.yaml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = for_duration
    path = workdir / "alerts.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


class Prometheus(Service):
    """prometheus/prometheus.yml with the scrape targets replaced by `targets` (job name -> host:port), 1 s scrapes."""

    def __init__(
        self,
        workdir: Path,
        targets: dict[str, str],
        alertmanager_url: str | None = None,
        rules: Path | None = None,
    ) -> None:
        config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        unknown = set(targets) - set(jobs)
        assert not unknown, f"prometheus.yml has no job {unknown}"
        config["scrape_configs"] = [
            {**jobs[name], "static_configs": [{"targets": [target]}]} for name, target in targets.items()
        ]
        config["rule_files"] = [str(rules or REPO / "prometheus" / "alerts.yaml")]
        if alertmanager_url:
            address = alertmanager_url.removeprefix("http://")
            config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [address]}]
        else:
            config.pop("alerting")
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.url = f"http://127.0.0.1:{free_port()}"
        argv = [
            require(PROMETHEUS),
            f"--config.file={path}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address={self.url.removeprefix('http://')}",
            "--enable-feature=exemplar-storage",
        ]
        super().__init__("prometheus", argv, workdir)

    def wait_ready(self) -> None:
        self.wait_http(self.url + "/-/ready")

    def query(self, expr: str, **params: str) -> list[dict[str, Any]]:
        """An instant query's result vector; a query Prometheus cannot parse or run fails with its message."""
        response = httpx.get(self.url + "/api/v1/query", params={"query": expr, **params}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus refused {expr!r}: {body.get('error')}")
        result = body["data"]["result"]
        return result if isinstance(result, list) else [result]

    def exemplars(self, expr: str, seconds: float = 600) -> list[dict[str, Any]]:
        now = time.time()
        params = {"query": expr, "start": str(now - seconds), "end": str(now)}
        body = httpx.get(self.url + "/api/v1/query_exemplars", params=params, timeout=10).json()
        assert body.get("status") == "success", body
        return list(body["data"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"])


def copy_logs(services: list[Service], destination: Path) -> None:
    """Keep each service's log next to the test's artifacts (for a failing run)."""
    destination.mkdir(parents=True, exist_ok=True)
    for service in services:
        if service.log_path.exists():
            shutil.copy(service.log_path, destination / service.log_path.name)


def versitygw_binary() -> str:
    return _built("tools/build-versitygw.sh")


class S3Server(Service):
    """versitygw with its posix backend: real S3 on 127.0.0.1, buckets are folders of `workdir/data`."""

    ACCESS_KEY = "otel-rag-test"
    SECRET_KEY = "otel-rag-test-secret"  # a throwaway server's root key

    def __init__(self, workdir: Path, bucket: str = "archive") -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.data = workdir / "data"
        (self.data / bucket).mkdir(parents=True, exist_ok=True)
        self.bucket = bucket
        env = {"ROOT_ACCESS_KEY": self.ACCESS_KEY, "ROOT_SECRET_KEY": self.SECRET_KEY}
        super().__init__(
            "versitygw", [versitygw_binary(), "--port", self.address, "posix", str(self.data)], workdir, env
        )

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"versitygw exited with {self.process.returncode}:\n{self.log()}")
            return httpx.get(f"http://{self.address}/", timeout=2).status_code < 500

        wait_until(ready, 30, f"versitygw at {self.address}")

    def client_env(self) -> dict[str, str]:
        """The standard AWS variables a client of this server needs."""
        return {
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_ENDPOINT_URL": f"http://{self.address}",
            "AWS_REGION": "us-east-1",
        }
