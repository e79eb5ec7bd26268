"""Production proof: the reference service under concurrent load, with faults, and a count of what arrived.

    python -m bench.load                                  # 1000 requests at concurrency 100, every fault
    python -m bench.load --requests 300 --concurrency 100 --faults postgres --no-baseline
    python -m bench.load --sigkill                        # also: what a SIGKILLed worker loses

The whole system runs as documented, on 127.0.0.1: `opentelemetry-instrument uvicorn examples.rag_app.main:app
--workers 2` with the local LLM, logs and spans to the Postgres sink (an embedded PostgreSQL), spans and metrics over
OTLP to our Collector, which sends traces to Jaeger and serves metrics to Prometheus, and the LangSmith mirror on
(tests/support/langsmith_server.py, which speaks the SDK's API). Users upload documents (txt, md, pdf) and ask
questions; a share of the answers is rated.

Faults, each switchable (`--faults postgres,collector,langsmith,worker`), at shares of the requests completed:
Postgres stopped for 10 s and restarted; the Collector killed and restarted 5 s later; LangSmith answering 500,
then not answering at all (its requests time out), then well again; one worker SIGTERMed (uvicorn replaces it, as
`--limit-max-requests` recycling does).

Then the count, from what the generator knows it sent: every request's trace complete in Postgres (the exact span
count of its shape and every stage's log line), in Jaeger (the same spans), and in LangSmith (a run per RAG span);
no row twice; Prometheus's request count equal to the requests sent. Any loss exits 1 and names what is missing.
Beside it, the same load without faults, with telemetry on and with `OTEL_SDK_DISABLED=true`: the overhead under
load. The report (markdown and PNG plots of throughput, latency, the sink's queue and spool, the Collector's queue,
with the fault windows shaded) goes to `--report` (default .build/load-report/).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from bench._proc import resident_mib, tree_cpu_seconds
from examples.rag_app.traffic import TOPICS, corpus
from otel_rag._store.embedded import LocalPostgres
from otel_rag._store.migrate import migrate
from tests.support.langsmith_server import LangSmithStub
from tests.support.llm import local_llm
from tests.support.processes import REPO, AppProcess, base_env, launch_uvicorn
from tests.support.stack import Collector, Jaeger, Prometheus

FAULTS = ("postgres", "collector", "langsmith", "worker")  # and "sigkill", measured apart (--sigkill)
# What each successful request leaves behind: its spans, by name, and the log lines of its stages
EMBED = "embeddings text-embedding-3-small"
UPLOAD_SPANS = ["POST /documents", "rag.upload", "rag.parse", "rag.chunk", EMBED, "rag.index"]
UPLOAD_LOGS = ["upload.done", "parse.done", "chunk.done", "embed.done", "index.done"]
ANSWER_SPANS = ["POST /query", "retrieval", "rag.rerank", EMBED, "chat gpt-4o-mini"]
ANSWER_LOGS = ["retrieve.done", "rerank.done", "embed.done", "generate.done"]
NO_HIT_SPANS, NO_HIT_LOGS = ["POST /query", "retrieval"], ["retrieve.done"]
FEEDBACK_SPANS, FEEDBACK_LOGS = ["POST /feedback"], ["feedback.received"]


@dataclass
class Sent:
    """One request, as the load generator saw it."""

    kind: str  # upload, question, feedback
    started: float
    ended: float
    status: int
    trace_id: str | None
    spans: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)


@dataclass
class Window:
    fault: str
    start: float
    end: float | None = None


@dataclass
class Run:
    name: str
    sent: list[Sent]
    started: float  # time.monotonic() of the first request
    ended: float
    wall_started: float  # time.time() of the first request (Prometheus's clock)
    windows: list[Window] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds each program used during the load
    memory: list[tuple[float, float]] = field(default_factory=list)  # (second, largest worker's resident MiB)
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # Prometheus series over time

    @property
    def ok(self) -> list[Sent]:
        return [s for s in self.sent if s.status == 200]

    def throughput(self) -> float:
        return len(self.ok) / (self.ended - self.started)

    def latency(self, share: float, where: Callable[[Sent], bool] = lambda s: True) -> float | None:
        values = sorted(s.ended - s.started for s in self.ok if where(s))
        return values[min(len(values) - 1, int(share * len(values)))] * 1000 if values else None

    def resident(self, where: Callable[[float], bool] = lambda second: True) -> tuple[float, float]:
        """(median, peak) MiB of the largest worker over the samples taken at the seconds `where` accepts."""
        values = [mib for second, mib in self.memory if where(second)] or [0.0]
        return statistics.median(values), max(values)


class System:
    """The stack (PostgreSQL, Jaeger, Collector, Prometheus, LangSmith, the LLM) and the service under test."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.postgres = LocalPostgres(workdir / "postgres").start()
        migrate(self.postgres.dsn())
        self.jaeger = Jaeger(workdir)
        self.collector = Collector(workdir, traces_backend=self.jaeger.otlp_grpc)
        targets = {
            "otel-collector": self.collector.metrics_target,
            "otel-collector-self": self.collector.telemetry_target,
        }
        self.prometheus = Prometheus(workdir, targets)
        self.langsmith = LangSmithStub()
        self.app: AppProcess | None = None

    @contextmanager
    def service(self, llm: str, telemetry: bool) -> Iterator[AppProcess]:
        """The reference service as documented, two workers; `telemetry=False`: OTEL_SDK_DISABLED=true."""
        spool = Path(tempfile.mkdtemp(prefix="spool-", dir=self.workdir))
        env = base_env(
            OPENAI_BASE_URL=llm + "/v1",
            OTEL_SERVICE_NAME="rag-app",
            OTEL_EXPORTER_OTLP_ENDPOINT=self.collector.otlp_http,
            OTEL_TRACES_EXPORTER="otlp,postgres",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_METRIC_EXPORT_INTERVAL="1000",
            OTEL_LOGS_EXPORTER="postgres",
            OTEL_RAG_POSTGRES_DSN=self.postgres.dsn(),
            OTEL_RAG_SPOOL_DIR=str(spool),
            LANGSMITH_API_KEY="lsv2_pt_load",
            LANGSMITH_ENDPOINT=self.langsmith.url,
            LANGSMITH_PROJECT="load",
            OTEL_SDK_DISABLED="false" if telemetry else "true",
        )
        env.pop("OTEL_BSP_SCHEDULE_DELAY")  # the SDK's default (5 s), as a deployment has it, not the tests' 100 ms
        with launch_uvicorn(env, "--workers", "2", app="examples.rag_app.main:app") as app:
            app.wait_ready("/healthz")
            self.app = app
            try:
                yield app
            finally:
                self.app = None

    def requests_counted(self, instances: list[str]) -> float:
        """The requests Prometheus counted from these processes (service.instance.id is the `instance` label): a
        run's own, whatever earlier runs left and even when a Collector restart lost the older series."""
        if not instances:
            return 0.0
        selector = f'job="rag-app",instance=~"{"|".join(instances)}",http_route=~"/documents|/query|/feedback"'
        answer = self.prometheus.query(f"sum(http_server_request_duration_seconds_count{{{selector}}})")
        return float(answer[0]["value"][1]) if answer else 0.0

    def workers(self) -> list[int]:
        """The uvicorn worker processes: the supervisor's children that multiprocessing spawned (not its resource
        tracker, also a child)."""
        assert self.app is not None
        pid = self.app.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        found = [int(c) for c in children if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")]
        assert found, f"no uvicorn worker among {children}"
        return found

    def busiest_worker(self) -> int:
        """The worker that has used the most CPU: the one serving (the kernel hands most connections to one)."""
        return max(self.workers(), key=tree_cpu_seconds)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each program (its whole process tree, reaped children included)."""
        assert self.app is not None
        roots = {
            "service (supervisor and workers)": self.app.process.pid,
            "PostgreSQL": self.postgres.pid() or 0,
            "Collector": self.collector.process.pid,
            "Jaeger": self.jaeger.process.pid,
            "Prometheus": self.prometheus.process.pid,
        }
        figures = {name: tree_cpu_seconds(pid) for name, pid in roots.items()}
        times = os.times()
        figures["load generator and LangSmith stub"] = times.user + times.system
        return figures

    def stop(self) -> None:
        for service in (self.prometheus, self.collector, self.jaeger):
            service.stop()
        self.langsmith.close()
        self.postgres.stop()


class MemorySampler:
    """The resident memory (VmRSS) of the largest worker twice a second while the load runs; workers that a fault
    replaced are picked up at the next sample."""

    def __init__(self, system: System, started: float) -> None:
        self.system, self.started = system, started
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            sizes = [resident_mib(pid) for pid in self.system.workers()]
            self.samples.append((time.monotonic() - self.started, max(sizes, default=0.0)))

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join()
        return self.samples


class Faults:
    """The fault timeline, triggered by the share of requests completed; each window is recorded for the plots."""

    def __init__(self, system: System, chosen: set[str], started: float, outage: float = 10.0) -> None:
        self.system, self.chosen, self.started, self.outage = system, chosen, started, outage
        self.windows: list[Window] = []
        self.plan = [
            (0.15, "postgres", self._postgres),
            (0.35, "collector", self._collector),
            (0.50, "langsmith", self._langsmith),
            (0.80, "worker", self._worker),
            (0.63, "sigkill", self._sigkill),
        ]
        self.plan.sort(key=lambda step: step[0])
        self.threads: list[threading.Thread] = []

    def progress(self, share: float) -> None:
        while self.plan and share >= self.plan[0][0]:
            _, name, action = self.plan.pop(0)
            if name in self.chosen:
                thread = threading.Thread(target=action, name=f"fault-{name}", daemon=True)
                thread.start()
                self.threads.append(thread)

    def wait(self) -> None:
        for thread in self.threads:
            thread.join()

    def _window(self, name: str) -> Window:
        window = Window(name, time.monotonic() - self.started)
        self.windows.append(window)
        return window

    def _close(self, window: Window) -> None:
        window.end = time.monotonic() - self.started

    def _postgres(self) -> None:
        window = self._window("Postgres stopped")
        self.system.postgres.stop("immediate")
        time.sleep(self.outage)
        self.system.postgres.start()
        self._close(window)

    def _collector(self) -> None:
        window = self._window("Collector killed")
        os.killpg(self.system.collector.process.pid, signal.SIGKILL)
        self.system.collector.process.wait()
        time.sleep(5)
        self.system.collector.start()
        self._close(window)

    def _langsmith(self) -> None:
        window = self._window("LangSmith 500")
        self.system.langsmith.fail_status, self.system.langsmith.fail = 500, True
        time.sleep(5)
        self.system.langsmith.fail = False
        self._close(window)
        window = self._window("LangSmith timing out")
        self.system.langsmith.delay = 30.0
        time.sleep(5)
        self.system.langsmith.delay = 0.0
        self._close(window)

    def _sigkill(self) -> None:
        window = self._window("worker SIGKILL")
        os.kill(self.system.busiest_worker(), signal.SIGKILL)
        time.sleep(1)
        self._close(window)

    def _worker(self) -> None:
        window = self._window("worker SIGTERM")
        os.kill(self.system.busiest_worker(), signal.SIGTERM)
        time.sleep(2)
        self._close(window)


async def drive(
    url: str,
    requests: int,
    concurrency: int,
    seed: int,
    progress: Callable[[float], None],
    seconds: float = 0.0,
    uploads_only: bool = False,
) -> list[Sent]:
    """`requests` requests from `concurrency` users at once: uploads (a third), questions, ratings of answers; as
    fast as the service answers, or spread evenly over `seconds` (so faults land while the load runs)."""
    rng = random.Random(seed)
    files = [f for f in corpus() if f[0] != "handbook.pdf"]
    questions = [q for _, (_, asked) in TOPICS.items() for q in asked]
    sent: list[Sent] = []
    answered: list[str] = []
    counter = iter(range(requests))

    share_of_uploads = 1.0 if uploads_only else 0.33
    failures: dict[str, int] = {}

    async def send(client: httpx.AsyncClient, kind: str, path: str, **request: Any) -> tuple[Sent, Any]:
        """One request; a connection the server dropped (a worker going away) is a failed request, status 0."""
        started = time.monotonic()
        try:
            response = await client.post(url + path, **request)
        except httpx.TransportError as error:
            failures[type(error).__name__] = failures.get(type(error).__name__, 0) + 1
            return Sent(kind, started, time.monotonic(), 0, None), None
        body = response.json() if response.status_code == 200 else None
        return Sent(kind, started, time.monotonic(), response.status_code, response.headers.get("x-trace-id")), body

    async def one(client: httpx.AsyncClient, user: str) -> None:
        headers = {"X-User-Id": user}
        for index in counter:
            if seconds:
                await asyncio.sleep(max(0.0, begin + index * seconds / requests - time.monotonic()))
            roll = rng.random()
            if roll < share_of_uploads or not answered:
                name, data, kind = rng.choice(files)
                upload = {"file": (name, data, kind)}
                item, _ = await send(client, "upload", "/documents", files=upload, headers=headers)
                item.spans, item.logs = UPLOAD_SPANS, UPLOAD_LOGS
            elif roll < 0.85:
                question = {"question": rng.choice(questions)}
                item, body = await send(client, "question", "/query", json=question, headers=headers)
                hits = body is not None and bool(body.get("sources"))
                item.spans, item.logs = (ANSWER_SPANS, ANSWER_LOGS) if hits else (NO_HIT_SPANS, NO_HIT_LOGS)
                if hits:
                    answered.append(body["trace_id"])
            else:
                rated = {"trace_id": rng.choice(answered), "rating": rng.randint(1, 5)}
                item, _ = await send(client, "feedback", "/feedback", json=rated, headers=headers)
                item.spans, item.logs = FEEDBACK_SPANS, FEEDBACK_LOGS
            sent.append(item)
            progress(len(sent) / requests)

    begin = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(one(client, f"load-user-{n:03d}") for n in range(concurrency)))
    if failures:
        print(f"requests that got no answer (the connection failed): {failures}", file=sys.stderr)
    return sent


def play(system: System, llm: str, args: argparse.Namespace, name: str, telemetry: bool, faults: set[str]) -> Run:
    """One run on a fresh service; with faults the requests are spread over --seconds, without at saturation."""
    with system.service(llm, telemetry) as app:
        cpu_before = system.cpu()
        started, wall_started = time.monotonic(), time.time()
        timeline = Faults(system, faults, started, args.outage)
        memory = MemorySampler(system, started)
        pace = args.seconds if faults else 0.0
        load = drive(app.url, args.requests, args.concurrency, args.seed, timeline.progress, pace, args.uploads_only)
        sent = asyncio.run(load)
        ended = time.monotonic()
        cpu_after = system.cpu()
        timeline.wait()
        run = Run(name, sent, started, ended, wall_started, timeline.windows, memory=memory.stop())
        run.cpu = {program: max(0.0, cpu_after[program] - cpu_before[program]) for program in cpu_after}
    return run  # the service is stopped: SIGTERM flushed every sink


# -- the count --------------------------------------------------------------------------------------------------


@dataclass
class Count:
    """What arrived, against what was sent."""

    requests: int
    missing: dict[str, list[str]] = field(default_factory=dict)  # sink -> what is missing, in words
    duplicates: dict[str, int] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return sum(len(items) for items in self.missing.values()) + sum(self.duplicates.values())


def wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(1)
    return check()


def count(system: System, run: Run, settle: float = 90) -> Count:
    """Every successful request's trace in Postgres, Jaeger and LangSmith; no duplicates; Prometheus's count."""
    expected = {s.trace_id: s for s in run.ok if s.trace_id}
    result = Count(len(run.sent))
    dsn = system.postgres.dsn()

    def postgres_spans() -> dict[str, list[str]]:
        with psycopg.connect(dsn) as connection:
            rows = connection.execute(
                "SELECT trace_id, name FROM otel_rag.spans WHERE trace_id = ANY(%s)", (list(expected),)
            ).fetchall()
        found: dict[str, list[str]] = {}
        for trace_id, span_name in rows:
            found.setdefault(trace_id, []).append(span_name)
        return found

    def complete(found: dict[str, list[str]]) -> bool:
        return all(sorted(found.get(t, [])) == sorted(s.spans) for t, s in expected.items())

    wait_for(lambda: complete(postgres_spans()), settle)  # the spool replays what waited for Postgres
    spans = postgres_spans()
    with psycopg.connect(dsn) as connection:
        logs: dict[str, list[str]] = {}
        for trace_id, body in connection.execute(
            "SELECT trace_id, body FROM otel_rag.logs WHERE trace_id = ANY(%s) AND body IS NOT NULL", (list(expected),)
        ).fetchall():
            logs.setdefault(trace_id, []).append(body)
        served = connection.execute(
            "SELECT resource->>'service.instance.id', count(*) FROM otel_rag.spans"
            " WHERE trace_id = ANY(%s) AND parent_span_id IS NULL GROUP BY 1 ORDER BY 2 DESC",
            (list(expected),),
        ).fetchall()
        result.figures["requests per process"] = [int(n) for _, n in served]
        result.figures["instances"] = [str(instance) for instance, _ in served]
        sizes = connection.execute(
            "SELECT (SELECT count(*) FROM otel_rag.spans) + (SELECT count(*) FROM otel_rag.logs),"
            " (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
            "  WHERE inhparent IN ('otel_rag.spans'::regclass, 'otel_rag.logs'::regclass)),"
            " (SELECT count(*) FROM otel_rag.spans WHERE trace_id = ANY(%s))"
            " + (SELECT count(*) FROM otel_rag.logs WHERE trace_id = ANY(%s))",
            (list(expected), list(expected)),
        ).fetchone()
        if sizes and sizes[0]:
            result.figures["rows per request"] = int(sizes[2]) / max(1, len(expected))
            result.figures["bytes per row"] = int(sizes[1] or 0) / int(sizes[0])
        twice_sql = sql.SQL(
            "SELECT count(*) FROM (SELECT 1 FROM {} WHERE trace_id = ANY(%s)"
            " GROUP BY trace_id, {} HAVING count(*) > 1) d"
        )
        for what, table, key in (
            ("postgres spans", "spans", ["span_id"]),
            ("postgres logs", "logs", ["span_id", "time", "body"]),
        ):
            keys = sql.SQL(", ").join(map(sql.Identifier, key))
            twice = connection.execute(
                twice_sql.format(sql.Identifier("otel_rag", table), keys), (list(expected),)
            ).fetchone()
            result.duplicates[what] = int(twice[0]) if twice else 0
    missing_pg = result.missing.setdefault("postgres", [])
    for trace_id, item in expected.items():
        have = sorted(spans.get(trace_id, []))
        if have != sorted(item.spans):
            missing_pg.append(f"{item.kind} {trace_id}: spans {have} instead of {sorted(item.spans)}")
        absent = [line for line in item.logs if line not in logs.get(trace_id, [])]
        access = any('HTTP/1.1" 200' in line for line in logs.get(trace_id, []))
        if absent or not access:
            missing_pg.append(
                f"{item.kind} {trace_id}: log lines {absent + ([] if access else ['access line'])} missing"
            )

    def jaeger_missing() -> list[str]:
        gaps = []
        for trace_id, item in expected.items():
            trace = system.jaeger.trace(trace_id)
            names = sorted(span["operationName"] for span in (trace or {}).get("spans", []))
            if names != sorted(item.spans):
                gaps.append(f"{item.kind} {trace_id}: {len(names)} of {len(item.spans)} spans")
        return gaps

    wait_for(lambda: not jaeger_missing(), settle)
    result.missing["jaeger"] = jaeger_missing()

    def langsmith_missing() -> list[str]:
        """A trace with RAG stages is mirrored whole (its request span too); one without (a rating) is not."""
        runs: dict[str, int] = {}
        for run_fields in list(system.langsmith.runs.values()):
            trace = (run_fields.get("extra") or {}).get("metadata", {}).get("otel_trace_id")
            if trace:
                runs[trace] = runs.get(trace, 0) + 1
        gaps = []
        for trace_id, item in expected.items():
            wanted = len(item.spans) if len(item.spans) > 1 else 0
            if runs.get(trace_id, 0) != wanted:
                gaps.append(f"{item.kind} {trace_id}: {runs.get(trace_id, 0)} of {wanted} runs")
        return gaps

    wait_for(lambda: not langsmith_missing(), settle)
    result.missing["langsmith"] = langsmith_missing()

    instances = result.figures.get("instances", [])
    counted = [0.0]

    answered = len(run.ok)

    def prometheus_count() -> bool:
        counted[0] = system.requests_counted(instances)
        return counted[0] >= len(run.sent)

    wait_for(prometheus_count, 30)
    result.figures["prometheus requests"] = counted[0]
    # every answered request counted; a request whose connection dropped may or may not have reached the server
    if not answered <= counted[0] <= len(run.sent):
        result.missing["prometheus"] = [f"counted {counted[0]:.0f} requests; {answered} were answered"]
    return result


# -- the report -------------------------------------------------------------------------------------------------


def sample(system: System, run: Run) -> None:
    """The sink's queue and spool and the Collector's queue over the run, from Prometheus (1 s steps)."""
    series = {
        "sink queue (records)": "sum(otel_rag_sink_queued)",
        "spool (bytes)": "sum(otel_rag_sink_spool_size_bytes)",
        "collector queue (batches)": "sum(otelcol_exporter_queue_size)",
    }
    names = httpx.get(system.prometheus.url + "/api/v1/label/__name__/values", timeout=10).json()["data"]
    queued = next((n for n in names if n.startswith("otel_rag_sink_queued")), None)
    if queued:
        series["sink queue (records)"] = f"sum({queued})"
    wall_start = run.wall_started
    for label, expr in series.items():
        end = wall_start + run.ended - run.started + 30
        params = {"query": expr, "start": str(wall_start), "end": str(end), "step": "1"}
        body = httpx.get(system.prometheus.url + "/api/v1/query_range", params=params, timeout=10).json()
        result = body.get("data", {}).get("result", [])
        run.samples[label] = [(float(t) - wall_start, float(v)) for t, v in result[0]["values"]] if result else []


def per_second(run: Run) -> tuple[list[float], list[float], list[float], list[float]]:
    """(second, requests completed, p50 ms, p95 ms) of each second of the run."""
    buckets: dict[int, list[float]] = {}
    for s in run.ok:
        buckets.setdefault(int(s.ended - run.started), []).append((s.ended - s.started) * 1000)
    seconds = sorted(buckets)
    p50 = [statistics.median(buckets[t]) for t in seconds]
    p95 = [sorted(buckets[t])[int(0.95 * (len(buckets[t]) - 1))] for t in seconds]
    return [float(t) for t in seconds], [float(len(buckets[t])) for t in seconds], p50, p95


def plots(runs: list[Run], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for run in runs:
        figure, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
        seconds, done, p50, p95 = per_second(run)
        axes[0].plot(seconds, done, color="#4c78a8")
        axes[0].set_ylabel("requests / s")
        axes[1].plot(seconds, p50, label="p50", color="#54a24b")
        axes[1].plot(seconds, p95, label="p95", color="#f58518")
        axes[1].set_ylabel("latency (ms)")
        axes[1].legend(loc="upper right")
        for label, colour in (("sink queue (records)", "#b279a2"), ("spool (bytes)", "#e45756")):
            points = run.samples.get(label, [])
            axis = axes[2] if label.startswith("sink") else axes[2].twinx()
            axis.plot([p[0] for p in points], [p[1] for p in points], color=colour, label=label)
            axis.set_ylabel(label)
        points = run.samples.get("collector queue (batches)", [])
        axes[3].plot([p[0] for p in points], [p[1] for p in points], color="#9d755d")
        axes[3].set_ylabel("Collector queue")
        axes[3].set_xlabel("seconds since the first request")
        for axis in axes:
            for window in run.windows:
                axis.axvspan(window.start, window.end or window.start + 1, color="#f0a000", alpha=0.2)
        for number, window in enumerate(run.windows):
            axes[0].annotate(
                window.fault, (window.start, 0.95 - 0.12 * number), xycoords=("data", "axes fraction"), fontsize=8
            )
        axes[0].set_ylim(bottom=0)
        axes[0].set_title(f"{run.name}: {len(run.sent)} requests")
        figure.tight_layout()
        name = re.sub(r"[^a-z0-9]+", "-", run.name.lower()).strip("-") + ".png"
        figure.savefig(folder / name, dpi=90)
        plt.close(figure)
        written.append(name)
    return written


def report(runs: list[Run], counts: dict[str, Count], args: argparse.Namespace, folder: Path) -> str:
    images = plots(runs, folder)
    by_name = {run.name: run for run in runs}
    lines = [
        f"# Load test, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{args.requests} requests per run at concurrency {args.concurrency}, two uvicorn workers, on "
        f"{os.cpu_count()} cores shared with PostgreSQL, the Collector, Jaeger, Prometheus and the LLM.",
        "",
        "| run | requests/s | p50 ms | p95 ms | failed requests |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        failed = len(run.sent) - len(run.ok)
        lines.append(
            f"| {run.name} | {run.throughput():.1f} | {run.latency(0.5):.0f} | {run.latency(0.95):.0f} | {failed} |"
        )
    programs = list(runs[0].cpu) if runs else []
    lines += ["", "CPU seconds used during each run's load, by program (2 cores in all):", ""]
    lines += ["| run | " + " | ".join(programs) + " |", "|---|" + "---|" * len(programs)]
    for run in runs:
        lines.append(f"| {run.name} | " + " | ".join(f"{run.cpu.get(p, 0):.1f}" for p in programs) + " |")
    lines += ["", "Resident memory of the largest worker during each run, MiB (sampled twice a second):", ""]
    lines += ["| run | median | peak |", "|---|---|---|"]
    for run in runs:
        median, peak = run.resident()
        lines.append(f"| {run.name} | {median:.0f} | {peak:.0f} |")
    disabled, plain = by_name.get("telemetry disabled"), by_name.get("telemetry on")
    if disabled and plain:
        ratio = plain.throughput() / disabled.throughput()
        p95 = (plain.latency(0.95) or 0) / (disabled.latency(0.95) or 1) - 1
        met = {True: "met", False: "not met"}
        lines += [
            "",
            f"Overhead under load: throughput {ratio:.2f}x telemetry disabled (goal >= 0.90x: {met[ratio >= 0.9]}), "
            f"p95 {p95:+.0%} (goal <= +10 %: {met[p95 <= 0.10]}).",
        ]
        (memory_on, _), (memory_off, _) = plain.resident(), disabled.resident()
        extra = memory_on - memory_off
        lines += [
            "",
            f"Memory at steady load: the largest worker {memory_on:.0f} MiB with telemetry, {memory_off:.0f} MiB "
            f"disabled ({extra:+.0f} MiB; goal <= +30 MiB: {met[extra <= 30]}).",
        ]
    faulty = by_name.get("telemetry on, faults")
    if faulty:
        outage = [w for w in faulty.windows if w.fault == "Postgres stopped"]
        if outage:
            start, end, origin = outage[0].start, outage[0].end or outage[0].start, faulty.started
            inside = faulty.latency(0.95, lambda s: start <= s.started - origin <= end)
            outside = faulty.latency(0.95, lambda s: not start <= s.started - origin <= end)
            if inside is not None and outside is not None:
                lines += ["", f"During the Postgres outage p95 was {inside:.0f} ms, outside it {outside:.0f} ms."]
            _, before = faulty.resident(lambda second: second < start)
            _, during = faulty.resident(lambda second: start <= second <= end)
            lines += [
                "",
                f"The largest worker's resident memory before the outage peaked at {before:.0f} MiB, during its "
                f"{end - start:.0f} s at {during:.0f} MiB (the sink's queue holds at most OTEL_RAG_POSTGRES_QUEUE_SIZE "
                "records, then spools to disk).",
            ]
    for run in runs:
        if run.windows:
            lines += ["", f"Faults of '{run.name}' (seconds since its first request):", ""]
            lines += [f"- {w.fault}: {w.start:.1f} to {w.end or 0:.1f}" for w in run.windows]
    for name, counted in counts.items():
        lines += ["", f"## What arrived: {name}", ""]
        prometheus = counted.figures.get("prometheus requests", 0)
        lines.append(f"- {counted.requests} requests sent; Prometheus counted {prometheus:.0f}")
        if "rows per request" in counted.figures:
            rows, size = counted.figures["rows per request"], counted.figures["bytes per row"]
            lines.append(f"- {rows:.1f} rows per request in Postgres (spans and logs), {size:.0f} bytes per row")
        per_process = counted.figures.get("requests per process", [])
        lines.append(f"- served by {len(per_process)} worker processes: {', '.join(map(str, per_process))} requests")
        for sink, items in counted.missing.items():
            lines.append(f"- {sink}: {'nothing missing' if not items else f'{len(items)} missing'}")
            lines += [f"  - {item}" for item in items[:20]]
        for what, number in counted.duplicates.items():
            lines.append(f"- duplicate {what}: {number}")
    lines += ["", *[f"![{image}]({image})" for image in images], ""]
    text = "\n".join(lines)
    (folder / "report.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--faults", default="all", help=f"comma-separated: {', '.join(FAULTS)}; all; none")
    parser.add_argument("--no-baseline", action="store_true", help="skip the runs without faults")
    parser.add_argument("--seconds", type=float, default=30.0, help="the faults run's length (default 30)")
    parser.add_argument("--report", default=str(REPO / ".build" / "load-report"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sigkill", action="store_true", help="also: a run where one worker is SIGKILLed")
    parser.add_argument("--uploads-only", action="store_true", help="every request an upload (the seed's test)")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Postgres stays stopped (default 10)")
    args = parser.parse_args(argv)
    chosen = set(FAULTS) if args.faults == "all" else set() if args.faults == "none" else set(args.faults.split(","))
    unknown = chosen - set(FAULTS)
    if unknown:
        parser.error(f"--faults: unknown {sorted(unknown)}; accepted: {', '.join(FAULTS)}, all, none")
    folder = Path(args.report)
    folder.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="otel-rag-load-", dir="/tmp"))
    workdir.chmod(0o755)
    system = System(workdir)
    runs: list[Run] = []
    counts: dict[str, Count] = {}
    killed_count: dict[str, Count] = {}
    try:
        with local_llm() as llm:
            if not args.no_baseline:
                runs.append(play(system, llm, args, "telemetry disabled", telemetry=False, faults=set()))
                runs.append(play(system, llm, args, "telemetry on", telemetry=True, faults=set()))
            faulty = play(
                system, llm, args, "telemetry on, faults" if chosen else "telemetry on, no faults", True, chosen
            )
            runs.append(faulty)
            counts[faulty.name] = count(system, faulty)
            sample(system, faulty)
            if args.sigkill:  # measured, not judged: what was in a killed process's memory is gone (docs/SCALING.md)
                killed = play(system, llm, args, "worker SIGKILL", True, {"sigkill"})
                runs.append(killed)
                killed_count[killed.name] = count(system, killed, settle=30)
        text = report(runs, counts | killed_count, args, folder)
        print(text)
        print(f"\nreport: {folder / 'report.md'}")
        lost = sum(c.lost for c in counts.values())
        print(f"verdict load: {'nothing lost, nothing twice' if lost == 0 else f'{lost} missing or duplicated'}")
        return 0 if lost == 0 else 1
    finally:
        system.stop()


if __name__ == "__main__":
    sys.exit(main())
