"""A real OTLP/HTTP receiver for tests: decodes the protobuf requests the SDK's exporters send.

It listens on 127.0.0.1 on a free port and keeps what it received (spans, metric names and data points, log
records) as plain dicts, so a test can assert on exactly what left the application process.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.raw: list[tuple[str, bytes]] = []  # (path, body) of every request, decompressed: for leak checks
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                handler = {
                    "/v1/traces": receiver._traces,
                    "/v1/metrics": receiver._metrics,
                    "/v1/logs": receiver._logs,
                }.get(self.path)
                if handler is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.requests += 1
                    receiver.raw.append((self.path, body))
                    handler(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _traces(self, body: bytes) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex() or None,
                            "kind": span.kind,
                            "status": span.status.code,
                            "attributes": _attributes(span.attributes),
                            "events": [{"name": e.name, "attributes": _attributes(e.attributes)} for e in span.events],
                            "resource": resource,
                            "scope": scope_spans.scope.name,
                            "scope_version": scope_spans.scope.version,
                            "schema_url": scope_spans.schema_url,
                        }
                    )

    def _metrics(self, body: bytes) -> None:
        request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in request.resource_metrics:
            resource = _attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    points = getattr(metric, kind).data_points if kind else []
                    self.metrics.append(
                        {
                            "name": metric.name,
                            "unit": metric.unit,
                            "kind": kind,
                            "resource": resource,
                            "points": [
                                {
                                    "attributes": _attributes(p.attributes),
                                    "count": getattr(p, "count", None),
                                    "value": getattr(p, "as_double", None) or getattr(p, "as_int", None),
                                }
                                for p in points
                            ],
                        }
                    )

    def _logs(self, body: bytes) -> None:
        request = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
        for resource_logs in request.resource_logs:
            resource = _attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    self.logs.append(
                        {
                            "body": _value(record.body),
                            "event_name": record.event_name,
                            "severity_text": record.severity_text,
                            "trace_id": record.trace_id.hex() or None,
                            "span_id": record.span_id.hex() or None,
                            "attributes": _attributes(record.attributes),
                            "resource": resource,
                            "scope": scope_logs.scope.name,
                        }
                    )

    def wait_for(self, condition: Callable[[OtlpReceiver], bool], timeout: float = 20.0) -> None:
        """Wait until `condition(self)` holds; fail loudly with what arrived if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if condition(self):
                    return
            time.sleep(0.05)
        names = sorted({span["name"] for span in self.spans})
        raise AssertionError(
            f"OTLP receiver: condition not met in {timeout}s; {len(self.spans)} spans {names}, "
            f"{len(self.metrics)} metric batches, {len(self.logs)} log records"
        )
