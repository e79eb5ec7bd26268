"""Throughput of the metrics-and-traces pipeline, and what OTLP export costs the app per span.

    python -m bench.otlp_pipeline [--spans 20000] [--series 2000]   (from the repository root, after make test)

Starts our Collector (collector-config.yaml), Jaeger v2 and Prometheus on free local ports, as the tests do, then:
1. App-side cost per span: the same spans made with the SDK and no exporter (baseline), and with otel-rag's OTLP
   path (BatchSpanProcessor -> redaction -> our encoder -> OTLP/HTTP to the Collector). Time on the emitting thread,
   and process CPU until everything is flushed (the export thread included), per span; ratios to the baseline.
2. Spans/s from one process through the Collector into Jaeger: from the first span made to the Collector's
   `otelcol_exporter_sent_spans` reaching the total; one trace checked in Jaeger.
3. Metric points/s from one process into Prometheus: counters with --series attribute sets in all, exported every
   second via OTLP; points accepted by the Collector per second, and the time until Prometheus holds every series.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
import time
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bench._proc import tree_cpu_seconds
from bench._verdict import Goal, report
from otel_rag._telemetry.otlp import FastOTLPSpanExporter
from otel_rag._telemetry.redaction import RedactingSpanExporter, Redactor
from tests.support.stack import Collector, Jaeger, Prometheus, wait_until

SPANS_PER_TRACE = 10


def _collector_counter(collector: Collector, name: str) -> float:
    """Sum of one of the Collector's own counters (with or without the _total suffix)."""
    text = httpx.get(f"http://{collector.telemetry_target}/metrics", timeout=5).text
    pattern = re.compile(rf"^{name}(?:_total)?(?:{{[^}}]*}})? ([0-9.e+]+)$", re.M)
    return sum(float(value) for value in pattern.findall(text))


def _make_spans(provider: TracerProvider, count: int) -> tuple[float, float, str]:
    """Make `count` spans in traces of SPANS_PER_TRACE; returns (wall s, process CPU s, last trace id)."""
    tracer = provider.get_tracer("bench")
    trace_id = ""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count // SPANS_PER_TRACE):
        with tracer.start_as_current_span("POST /query", attributes={"http.route": "/query"}) as root:
            for stage in range(SPANS_PER_TRACE - 1):
                with tracer.start_as_current_span(f"rag.stage{stage}", attributes={"rag.stage": stage}):
                    pass
        trace_id = format(root.get_span_context().trace_id, "032x")
    return time.perf_counter() - wall, time.process_time() - cpu, trace_id


def bench_spans(collector: Collector, jaeger: Jaeger, count: int) -> list[Goal]:
    resource = Resource.create({"service.name": "bench-otlp"})
    bare = TracerProvider(resource=resource)
    _make_spans(bare, 2000)  # warm-up
    bare_wall, bare_cpu, _ = _make_spans(bare, count)

    exporter = FastOTLPSpanExporter(endpoint=f"{collector.otlp_http}/v1/traces")
    exported = TracerProvider(resource=resource)
    exported.add_span_processor(
        BatchSpanProcessor(RedactingSpanExporter(exporter, Redactor()), max_queue_size=count * 2)
    )
    sent_before = _collector_counter(collector, "otelcol_exporter_sent_spans")
    services = {"Collector": collector.process.pid, "Jaeger": jaeger.process.pid}
    services_before = {name: tree_cpu_seconds(pid) for name, pid in services.items()}
    started, cpu_started = time.perf_counter(), time.process_time()
    wall, _, last_trace = _make_spans(exported, count)
    exported.force_flush(60_000)
    cpu = time.process_time() - cpu_started  # all threads: making, batching, redacting, encoding, sending
    wait_until(
        lambda: _collector_counter(collector, "otelcol_exporter_sent_spans") - sent_before >= count,
        120,
        "every span sent on to Jaeger",
        interval=0.05,
    )
    delivered = time.perf_counter() - started
    services_cpu = {name: tree_cpu_seconds(pid) - services_before[name] for name, pid in services.items()}
    found = wait_until(lambda: jaeger.trace(last_trace), 30, "the last trace in Jaeger")
    assert len(found["spans"]) == SPANS_PER_TRACE, found
    exported.shutdown()

    per_span_bare = bare_wall / count * 1e6
    per_span = wall / count * 1e6
    print(f"spans: {count} in traces of {SPANS_PER_TRACE}")
    print(
        f"  app thread per span   no export {per_span_bare:6.1f} us   OTLP export {per_span:6.1f} us   "
        f"ratio {per_span / per_span_bare:.2f}x"
    )
    print(
        f"  app CPU per span      no export {bare_cpu / count * 1e6:6.1f} us   OTLP export "
        f"{cpu / count * 1e6:6.1f} us   ratio {cpu / bare_cpu:.2f}x (process CPU, export thread included)"
    )
    print(
        f"  through the Collector into Jaeger: {count / delivered:,.0f} spans/s "
        f"({delivered:.2f} s from the first span to the last sent); the same process makes "
        f"{count / bare_wall:,.0f} spans/s without export ({bare_wall / delivered:.2f}x)"
    )
    shares = ", ".join(f"{name} {seconds / count * 1e6:.1f} us" for name, seconds in services_cpu.items())
    print(f"  CPU per span on the same {os.cpu_count()} cores: this process {cpu / count * 1e6:.1f} us, {shares}")
    return [
        Goal("otlp_pipeline spans/s through the Collector into Jaeger", count / delivered, 30_000, unit=""),
        Goal("otlp_pipeline app thread with export vs without", per_span / per_span_bare, 1.5, higher_is_better=False),
    ]


def bench_metrics(collector: Collector, prometheus: Prometheus, series: int) -> None:
    exporter = OTLPMetricExporter(endpoint=f"{collector.otlp_http}/v1/metrics")
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=1000)
    provider = MeterProvider(resource=Resource.create({"service.name": "bench-metrics"}), metric_readers=[reader])
    # The SDK keeps at most 2000 attribute sets per instrument (the rest fold into one overflow series), so the
    # series are spread over instruments of 1000 each.
    meter = provider.get_meter("bench")
    counters = [
        meter.create_counter(f"bench.points.{index}", unit="{point}") for index in range(math.ceil(series / 1000))
    ]
    accepted_before = _collector_counter(collector, "otelcol_receiver_accepted_metric_points")
    started = time.perf_counter()
    rounds = 10
    for _ in range(rounds):
        for index in range(series):
            counters[index // 1000].add(1, {"series": index})
        time.sleep(1)
    elapsed = time.perf_counter() - started
    accepted = _collector_counter(collector, "otelcol_receiver_accepted_metric_points") - accepted_before
    query = 'count({__name__=~"bench_points_[0-9]+_total", job="bench-metrics"})'
    wait_until(
        lambda: float(prometheus.query(query)[0]["value"][1]) >= series,
        60,
        "every series in Prometheus",
        interval=0.5,
    )
    in_prometheus = time.perf_counter() - started
    provider.shutdown()
    print(f"metric points: {series} series ({len(counters)} counters), exported every 1 s for {rounds} s")
    print(f"  accepted by the Collector: {accepted / elapsed:,.0f} points/s ({accepted:,.0f} points)")
    print(f"  every series queryable in Prometheus after {in_prometheus:.1f} s")


def main(argv: list[str] | None = None) -> list[Goal]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--series", type=int, default=2_000)
    parser.add_argument("--no-metrics", action="store_true", help="spans only (the CI guard's quick variant)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-otlp-"))
    jaeger = Jaeger(workdir)
    collector = Collector(workdir, traces_backend=jaeger.otlp_grpc)
    targets = {"otel-collector": collector.metrics_target, "otel-collector-self": collector.telemetry_target}
    prometheus = Prometheus(workdir, targets)
    try:
        goals = bench_spans(collector, jaeger, args.spans)
        if not args.no_metrics:
            bench_metrics(collector, prometheus, args.series)
    finally:
        for service in (prometheus, collector, jaeger):
            service.stop()
    return report(goals)


if __name__ == "__main__":
    main()
