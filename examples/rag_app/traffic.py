"""A day of traffic for the reference service, played in minutes: the store the eight questions are asked of.

    python -m examples.rag_app.traffic --minutes 8 --shell       # an embedded PostgreSQL, then a shell to ask in
    python -m examples.rag_app.traffic --dsn postgresql://... --minutes 8 --summary run.json

What it plays, so that each question of docs/QUESTIONS.md has an answer to find:
- an A/B test of chunk size: two deployments of the reference service side by side (`RAG_CHUNK_WORDS` 60 and 120),
  each user always sent to the same one;
- 24 users uploading documents (Markdown, text, PDF, one of them a long handbook) and asking questions; a third of
  the answers rated 1..5 (low when the answer strayed from its sources);
- the errors real users meet: a file type the service refuses, an empty document, and a stretch in which the model
  server is overloaded and fails one call in four;
- at 60 % of the run, version 1.5.0 deployed to both sides with a cheaper chat model that strays from its context in
  a quarter of its answers: the planted quality drop.
Each deployment runs under `opentelemetry-instrument uvicorn` and writes its logs and spans to the Postgres store (the
model server answers in time proportional to the tokens, as a real one does). At the end it prints what the
questions need as `export NAME=value` lines (and writes them as JSON with `--summary`); it exits 1 if any request got
an answer the plan did not expect.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from examples.rag_app.pdf import make_pdf
from otel_rag._store.embedded import LocalPostgres
from otel_rag._store.migrate import migrate
from otel_rag.testing import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
USERS = [f"user-{n:02d}" for n in range(1, 25)]
UNLUCKY_USER = "user-07"  # the one who uploads what the service refuses
CHEAP_MODEL_DRIFT = 0.25
DROP_SHARE, INCIDENT = 0.6, (0.3, 0.38)  # shares of the run: the deploy; the model server's overload
BUCKETS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]

# Each topic: sentences for its document and questions they answer (sharing their words, as users' questions do).
TOPICS: dict[str, tuple[list[str], list[str]]] = {
    "returns": (
        [
            "Refunds are accepted within thirty days of purchase.",
            "The original receipt is required for every refund.",
            "Gift cards cannot be refunded or exchanged for cash.",
            "Opened software can be exchanged but not refunded.",
            "Refunds reach the original payment card within five business days.",
        ],
        [
            "Within how many days are refunds accepted?",
            "Is the original receipt required for a refund?",
            "Can gift cards be refunded?",
            "Can opened software be refunded?",
            "When do refunds reach the payment card?",
        ],
    ),
    "shipping": (
        [
            "Standard shipping takes five business days.",
            "Express shipping costs ten dollars and takes two days.",
            "Orders over fifty dollars ship free with standard shipping.",
            "International shipping is available to thirty countries.",
            "A tracking number is emailed when the parcel leaves the warehouse.",
        ],
        [
            "How long does standard shipping take?",
            "What does express shipping cost?",
            "Which orders ship free?",
            "Is international shipping available?",
            "When is the tracking number emailed?",
        ],
    ),
    "warranty": (
        [
            "Every appliance has a two year warranty against defects.",
            "The warranty does not cover water damage or drops.",
            "Warranty repairs are done at the service center within ten days.",
            "An extended warranty adds three more years for forty dollars.",
        ],
        [
            "How long is the appliance warranty?",
            "Does the warranty cover water damage?",
            "Where are warranty repairs done?",
            "What does the extended warranty add?",
        ],
    ),
    "accounts": (
        [
            "Passwords must have at least twelve characters.",
            "Two factor authentication can be enabled in the security settings.",
            "Accounts inactive for two years are closed after an email notice.",
            "A deleted account can be restored within fourteen days.",
        ],
        [
            "How many characters must passwords have?",
            "Where is two factor authentication enabled?",
            "When are inactive accounts closed?",
            "Can a deleted account be restored?",
        ],
    ),
    "payments": (
        [
            "Invoices are sent on the first business day of each month.",
            "Payment by bank transfer is due within fifteen days of the invoice.",
            "Late payments carry a fee of two percent per month.",
            "Credit cards are charged on the day the order ships.",
        ],
        [
            "When are invoices sent?",
            "When is payment by bank transfer due?",
            "What is the fee for late payments?",
            "When are credit cards charged?",
        ],
    ),
}
UNANSWERABLE = ["What is the meaning of life?", "Who won the football match yesterday?"]


def corpus() -> list[tuple[str, bytes, str]]:
    """(file name, bytes, content type): a document per topic in turns of Markdown, text and PDF, and a long handbook
    (twenty PDF pages) whose upload is the slow one."""
    files = []
    for number, (topic, (sentences, _)) in enumerate(TOPICS.items()):
        text = f"{topic.title()} policy. " + " ".join(sentences)
        if number % 3 == 0:
            files.append((f"{topic}.md", f"# {topic.title()}\n\n{' '.join(sentences)}\n".encode(), "text/markdown"))
        elif number % 3 == 1:
            files.append((f"{topic}.txt", text.encode(), "text/plain"))
        else:
            files.append((f"{topic}.pdf", make_pdf([text]), "application/pdf"))
    pages = [" ".join(sentences * 6) for sentences, _ in TOPICS.values()] * 4
    files.append(("handbook.pdf", make_pdf(pages), "application/pdf"))
    return files


def bucket_for(seconds: float) -> str:
    """A round bucket size giving about sixteen buckets over the run (`otel-rag quality --bucket`)."""
    size = min(BUCKETS, key=lambda candidate: abs(seconds / 16 - candidate))
    return f"{size // 60}m" if size >= 60 and size % 60 == 0 else f"{size}s"


@dataclass
class Deployment:
    """One deployment of the reference service: `opentelemetry-instrument uvicorn` with its chunking and version."""

    name: str
    version: str
    chunk_words: int
    chat_model: str
    environ: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(self.environ)
        env.update(
            {
                "RAG_CHUNK_WORDS": str(self.chunk_words),
                "RAG_CHAT_MODEL": self.chat_model,
                "OTEL_RESOURCE_ATTRIBUTES": f"service.version={self.version},deployment.environment.name=traffic",
            }
        )
        argv = [str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"), "examples.rag_app.main:app"]
        self.log = (self.workdir / f"{self.name}-{self.version}.log").open("wb")
        self.process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=self.log,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} {self.version} exited: see {self.workdir}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} {self.version} did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        """SIGTERM: uvicorn finishes the requests in flight and the sink flushes to Postgres."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        if self.log is not None:
            self.log.close()
            self.log = None


@dataclass
class Outcome:
    kind: str  # upload, question, feedback
    user: str
    status: int
    seconds: float
    trace_id: str | None
    expected: set[int]
    groundedness: float | None = None
    rated: bool = False


class Traffic:
    """Plays the plan against the deployments and keeps what each request got."""

    def __init__(self, seconds: float, rate: float, llm_url: str, seed: int = 7) -> None:
        self.seconds, self.rate, self.llm_url = seconds, rate, llm_url
        self.random = random.Random(seed)
        self.outcomes: list[Outcome] = []
        self.sides: dict[str, Deployment] = {}
        self.overloaded = False
        self.marks: dict[str, dt.datetime] = {}

    def side_of(self, user: str) -> Deployment:
        return self.sides["a" if USERS.index(user) % 2 == 0 else "b"]

    async def upload(self, client: httpx.AsyncClient, user: str, name: str, data: bytes, kind: str) -> None:
        deployment = self.side_of(user) if user != "loader" else None
        targets = [deployment] if deployment is not None else list(self.sides.values())
        for target in targets:
            expected = {200, 500} if self.overloaded else {200}
            if name.endswith(".docx"):
                expected = {415}
            elif not data.strip():
                expected = {422}
            files = {"file": (name, data, kind)}
            await self._send(client, "upload", user, target.url + "/documents", expected, files=files)

    async def question(self, client: httpx.AsyncClient, user: str) -> None:
        topic = self.random.choice(list(TOPICS))
        unanswerable = self.random.random() < 0.04
        text = self.random.choice(UNANSWERABLE if unanswerable else TOPICS[topic][1])
        target = self.side_of(user)
        expected = {200, 500} if self.overloaded else {200}
        body = await self._send(client, "question", user, target.url + "/query", expected, json={"question": text})
        if body is None or "groundedness" not in body or self.random.random() >= 0.35:
            return
        grounded = float(body["groundedness"]) >= 0.5
        rating = self.random.choice([4, 5, 5]) if grounded else self.random.choice([1, 1, 2, 3])
        self.outcomes[-1].rated = True
        rated = {"trace_id": body["trace_id"], "span_id": body["span_id"], "rating": rating}
        # any deployment records it (by the rated trace's id): the one the user is sent to now, after a deploy too
        await self._send(client, "feedback", user, self.side_of(user).url + "/feedback", {200}, json=rated)

    async def _send(
        self, client: httpx.AsyncClient, kind: str, user: str, url: str, expected: set[int], **request: Any
    ) -> dict[str, Any] | None:
        started = time.monotonic()
        try:
            response = await client.post(url, headers={"X-User-Id": user}, **request)
        except httpx.HTTPError as error:  # counted as unexpected (status 0), never ends the run
            self.outcomes.append(Outcome(kind, user, 0, time.monotonic() - started, repr(error), expected))
            return None
        outcome = Outcome(kind, user, response.status_code, time.monotonic() - started, None, expected)
        outcome.trace_id = response.headers.get("x-trace-id")
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
        if isinstance(body, dict) and "groundedness" in body:
            outcome.groundedness = float(body["groundedness"])
        self.outcomes.append(outcome)
        return body if response.status_code == 200 and isinstance(body, dict) else None

    async def control(self, client: httpx.AsyncClient, **settings: Any) -> None:
        (await client.post(self.llm_url + "/control", json=settings)).raise_for_status()

    async def one_request(self, client: httpx.AsyncClient, files: list[tuple[str, bytes, str]]) -> None:
        user = self.random.choice(USERS)
        roll = self.random.random()
        if user == UNLUCKY_USER and roll < 0.15:
            refused = [
                ("notes.docx", b"PK\x03\x04 not a text", "application/msword"),
                ("empty.txt", b"  ", "text/plain"),
            ]
            await self.upload(client, user, *self.random.choice(refused))
        elif roll < 0.08:
            await self.upload(client, user, *self.random.choice(files))
        else:
            await self.question(client, user)

    async def play(self, deploy: Any) -> None:
        """Requests at `rate` a second for `seconds`; the incident and the deploy at their shares of the run."""
        files = corpus()
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            for name, data, kind in files:
                await self.upload(client, "loader", name, data, kind)
            started = time.monotonic()
            self.marks["start"] = dt.datetime.now(dt.UTC)
            pending: set[asyncio.Task[None]] = set()
            deployed: asyncio.Task[None] | None = None
            total = int(self.seconds * self.rate)
            for number in range(total):
                share = number / total
                if INCIDENT[0] <= share < INCIDENT[1] and not self.overloaded:
                    self.overloaded = True
                    self.marks["incident"] = dt.datetime.now(dt.UTC)
                    await self.control(client, mode="fail", fail_ratio=0.25)
                elif share >= INCIDENT[1] and self.overloaded:
                    await self.control(client, mode="normal")
                    self.marks["incident_end"] = dt.datetime.now(dt.UTC)
                    self.overloaded = False
                if share >= DROP_SHARE and deployed is None:
                    deployed = asyncio.create_task(deploy(client, files))
                task = asyncio.create_task(self.one_request(client, files))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.sleep(max(0.0, started + (number + 1) / self.rate - time.monotonic()))
            await asyncio.gather(*pending)
            if deployed is not None:
                await deployed


def _postgres(args: argparse.Namespace, workdir: Path) -> tuple[str, LocalPostgres | None]:
    dsn = args.dsn or os.environ.get("OTEL_RAG_POSTGRES_DSN")
    if dsn:
        return dsn, None
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o755)
    server = LocalPostgres(data / "postgres").start()
    print(f"embedded {server.version()} on 127.0.0.1:{server.port}, data in {data / 'postgres'}", file=sys.stderr)
    return server.dsn(), server


def summarise(traffic: Traffic, seconds: float) -> dict[str, Any]:
    """What the questions need: the window, the marks, and a request of each kind worth asking about."""
    uploads = [o for o in traffic.outcomes if o.kind == "upload" and o.status == 200 and o.user != "loader"]
    loads = [o for o in traffic.outcomes if o.kind == "upload" and o.status == 200]
    rated = [o for o in traffic.outcomes if o.kind == "question" and o.rated and o.status == 200]
    failed: dict[str, int] = {}
    for outcome in traffic.outcomes:
        if outcome.status >= 400 and outcome.user != "loader":
            failed[outcome.user] = failed.get(outcome.user, 0) + 1
    slowest = max(uploads or loads, key=lambda o: o.seconds)
    # the user whose refused uploads the questions look at (others meet the overload's errors too)
    error_user = UNLUCKY_USER if failed.get(UNLUCKY_USER) else max(failed, key=failed.__getitem__, default=UNLUCKY_USER)
    marks = {name: at.strftime("%Y-%m-%dT%H:%M:%SZ") for name, at in traffic.marks.items()}  # URL-safe: no "+"
    return {
        "START": (traffic.marks["start"] - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "END": marks["end"],
        "DEPLOYED_AT": marks["deployed"],
        "INCIDENT_AT": marks["incident"],
        "INCIDENT_END": marks["incident_end"],
        "BUCKET": bucket_for(seconds),
        "SLOW_UPLOAD": slowest.trace_id,
        "ERROR_USER": error_user,
        "QUESTION": rated[-1].trace_id if rated else None,
    }


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="otel-rag-traffic-"))
    dsn, embedded = _postgres(args, workdir)
    llm_port = free_port()
    llm = subprocess.Popen([sys.executable, "-m", "examples.rag_app.llm_server", "--port", str(llm_port)], cwd=REPO)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LANGSMITH_"))}
    environ.update(
        {
            "OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
            "OTEL_PYTHON_DISTRO": "otel_rag",
            "OTEL_SERVICE_NAME": "rag-app",
            "OTEL_TRACES_EXPORTER": "postgres",
            "OTEL_LOGS_EXPORTER": "postgres",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_RAG_POSTGRES_DSN": dsn,
            "OTEL_RAG_SPOOL_DIR": str(workdir / "spool"),
            # the model calls are the GenAI stages' spans already (the client libraries' spans would repeat them)
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "httpx,httpx2,requests,urllib3,psycopg",
        }
    )
    seconds = args.minutes * 60
    traffic = Traffic(seconds, args.rate, f"http://127.0.0.1:{llm_port}")
    old: list[Deployment] = []
    try:
        migrate(dsn)
        httpx_wait(f"http://127.0.0.1:{llm_port}/docs")
        httpx.post(
            traffic.llm_url + "/control",
            json={"drift": {"gpt-4.1-nano": CHEAP_MODEL_DRIFT}, "seconds_per_1k_tokens": args.seconds_per_1k_tokens},
        ).raise_for_status()
        for side, words in (("a", 60), ("b", 120)):
            traffic.sides[side] = Deployment(f"chunk{words}", "1.4.0", words, "gpt-4o-mini", environ, workdir)
        _start(list(traffic.sides.values()))

        async def deploy(client: httpx.AsyncClient, files: list[tuple[str, bytes, str]]) -> None:
            """Version 1.5.0 on both sides (the cheaper model), its index loaded, then the traffic switched to it."""
            new = {
                side: Deployment(d.name, "1.5.0", d.chunk_words, "gpt-4.1-nano", environ, workdir)
                for side, d in traffic.sides.items()
            }
            await asyncio.to_thread(_start, list(new.values()))
            for deployment in new.values():
                for name, data, kind in files:
                    await client.post(deployment.url + "/documents", files={"file": (name, data, kind)})
            old.extend(traffic.sides.values())
            traffic.sides = new
            traffic.marks["deployed"] = dt.datetime.now(dt.UTC)
            await asyncio.sleep(2)  # the old deployments finish what they were sent
            await asyncio.to_thread(_stop, list(old))

        asyncio.run(traffic.play(deploy))
        _stop([*traffic.sides.values(), *old])  # SIGTERM flushes each sink
        traffic.marks["end"] = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        return _report(traffic, seconds, dsn, embedded, args)
    finally:
        _stop([*traffic.sides.values(), *old])
        llm.terminate()
        llm.wait(10)
        if embedded is not None:
            embedded.stop()


def httpx_wait(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _start(deployments: list[Deployment]) -> None:
    for deployment in deployments:
        deployment.start()
    for deployment in deployments:
        deployment.wait_ready()


def _stop(deployments: list[Deployment]) -> None:
    for deployment in deployments:
        deployment.stop()


def _report(
    traffic: Traffic, seconds: float, dsn: str, embedded: LocalPostgres | None, args: argparse.Namespace
) -> int:
    outcomes = traffic.outcomes
    unexpected = [o for o in outcomes if o.status not in o.expected]
    counts: dict[str, int] = {}
    for outcome in outcomes:
        key = f"{outcome.kind} {outcome.status}"
        counts[key] = counts.get(key, 0) + 1
    print(f"{len(outcomes)} requests in {seconds:.0f} s: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    summary = summarise(traffic, seconds)
    summary["REQUESTS"] = len(outcomes)
    for outcome in unexpected[:20]:
        print(f"unexpected: {outcome.kind} of {outcome.user} got {outcome.status} (trace {outcome.trace_id})")
    for name, value in summary.items():
        print(f"export {name}={value}")
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    if args.shell:
        env = dict(os.environ, OTEL_RAG_POSTGRES_DSN=dsn, **{k: str(v) for k, v in summary.items()})
        print("a shell with OTEL_RAG_POSTGRES_DSN and the variables above; ask away (docs/QUESTIONS.md), exit to stop")
        subprocess.run([os.environ.get("SHELL", "/bin/sh")], env=env, check=False)
    elif embedded is not None:
        print("the embedded PostgreSQL stops now; --shell keeps it up for the questions", file=sys.stderr)
    return 1 if unexpected else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=8.0, help="length of the run (default 8)")
    parser.add_argument("--rate", type=float, default=6.0, help="requests a second (default 6)")
    parser.add_argument("--dsn", help="the store (default OTEL_RAG_POSTGRES_DSN, else an embedded PostgreSQL)")
    parser.add_argument("--data", default=".data/traffic", help="the embedded PostgreSQL's folder")
    parser.add_argument("--summary", help="write the figures the questions need to this JSON file")
    parser.add_argument("--shell", action="store_true", help="open a shell to ask the questions in, then stop")
    parser.add_argument("--seconds-per-1k-tokens", type=float, default=0.05, help="the model's pace (default 0.05)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
