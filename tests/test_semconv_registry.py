"""Every attribute key the reference service emits (spans, metrics, log records, resource), checked against the
semantic-conventions registry that `opentelemetry-semantic-conventions` ships (stable and incubating, with its
deprecation marks): no deprecated key, no key the registry does not know inside an official namespace, our own keys
only under `rag.` and `otel_rag.`, and metric units in UCUM form."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import httpx
import pytest

from tests.support.otlp import OtlpReceiver
from tests.support.processes import base_env, launch_uvicorn

# The namespaces the OpenTelemetry registries own: a key there must be one they define.
OFFICIAL = ("http.", "url.", "server.", "client.", "gen_ai.", "user_agent.", "network.", "error.", "enduser.", "db.")
OURS = ("rag.", "otel_rag.")
# Keys of the GenAI registry (semantic-conventions-genai v0.1.0) that opentelemetry-semantic-conventions 0.66b1 does
# not ship yet: the registry moved retrieval's top-k off gen_ai.request.top_k (the sampling parameter) in #217.
GENAI_V0_1_0 = frozenset({"gen_ai.retrieval.top_k"})
# The GenAI keys the Python package marks "Deprecated: Moved to the GenAI repository" are moved, not retired.
_MOVED = "Moved to the [OpenTelemetry GenAI semantic conventions repository]"
_UCUM = re.compile(r"(s|ms|us|ns|By|KiBy|MiBy|1|%|\{[^{}\s]+\})")


def _registry() -> tuple[set[str], set[str], set[str]]:
    """(registered keys, deprecated keys, template prefixes) from the package's attribute modules' source."""
    spec = importlib.util.find_spec("opentelemetry.semconv")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    keys: set[str] = set()
    deprecated: set[str] = set()
    templates: set[str] = set()
    for path in [*root.glob("attributes/*.py"), *root.glob("_incubating/attributes/*.py")]:
        body = ast.parse(path.read_text()).body
        for statement, following in zip(body, [*body[1:], None], strict=False):  # each with the one after it
            if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
                continue
            value = statement.value
            if not isinstance(value, ast.Constant) or not isinstance(value.value, str):
                continue
            is_doc = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
            doc = following.value.value if is_doc else ""  # type: ignore[union-attr]
            if statement.target.id.endswith("_TEMPLATE"):
                templates.add(value.value + ".")
                continue
            keys.add(value.value)
            if isinstance(doc, str) and doc.strip().startswith("Deprecated:") and _MOVED not in doc:
                deprecated.add(value.value)
    return keys, deprecated, templates


def test_the_registry_is_read_whole() -> None:
    """The reading above finds what it must, so an empty registry cannot pass the check below."""
    keys, deprecated, templates = _registry()
    assert {"http.request.method", "url.query", "gen_ai.request.model", "enduser.id", "server.port"} <= keys
    assert {"http.method", "gen_ai.usage.prompt_tokens", "net.peer.name"} <= deprecated
    assert "gen_ai.request.model" not in deprecated  # moved to the GenAI registry, not retired
    assert "http.request.header." in templates


@pytest.mark.integration  # runs the reference service under the launcher
def test_every_key_the_reference_service_emits_is_registered_or_ours(llm: str) -> None:
    keys, deprecated, templates = _registry()
    with OtlpReceiver() as otlp:
        env = base_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
            OTEL_SERVICE_NAME="rag-app",
            OTEL_LOGS_EXPORTER="otlp",
            OPENAI_BASE_URL=llm + "/v1",
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST="x-request-id",
        )
        with launch_uvicorn(env, app="examples.rag_app.main:app") as app:
            app.wait_ready("/healthz")
            headers = {"X-User-Id": "ana", "X-Request-Id": "r-1"}
            files = {"file": ("returns.md", b"# Returns\n\nRefunds are accepted within thirty days.", "text/markdown")}
            assert httpx.post(app.url + "/documents", files=files, headers=headers, timeout=30).status_code == 200
            answer = httpx.post(app.url + "/query", json={"question": "Refunds?"}, headers=headers, timeout=30)
            body = answer.json()
            rating = {"trace_id": body["trace_id"], "span_id": body["span_id"], "rating": 4}
            assert httpx.post(app.url + "/feedback", json=rating, headers=headers).status_code == 200
            otlp.wait_for(lambda r: any(m["name"] == "rag.cost" for m in r.metrics), timeout=30)
            app.stop()
    emitted: dict[str, set[str]] = {}

    def note(key: str, where: str) -> None:
        emitted.setdefault(key, set()).add(where)

    for span in otlp.spans:
        for key in span["attributes"]:
            note(key, f"span {span['name']}")
        for event in span["events"]:
            for key in event["attributes"]:
                note(key, f"event {event['name']}")
        for key in span["resource"]:
            note(key, "resource")
    for metric in otlp.metrics:
        for point in metric["points"]:
            for key in point["attributes"]:
                note(key, f"metric {metric['name']}")
    for record in otlp.logs:
        if record["scope"].startswith(("otel_rag", "uvicorn.access")):  # the app's own log calls name their keys
            for key in record["attributes"]:
                note(key, f"log {record['scope']}")
    assert {"span POST /query", "metric rag.cost", "log otel_rag.quality"} <= set().union(*emitted.values())

    def problem(key: str) -> str | None:
        if key in deprecated:
            return "deprecated"
        if key in keys or key in GENAI_V0_1_0 or key.startswith(tuple(templates)):
            return None
        if key.startswith(OFFICIAL):
            return "not in the registry, inside an official namespace"
        if key.startswith(OURS) or key.startswith(("service.", "telemetry.", "process.", "host.", "os.")):
            return None if key.startswith(OURS) or key in keys else "unregistered resource key"
        return "ours, outside rag. and otel_rag."

    problems = {key: (why, sorted(emitted[key])[:3]) for key in emitted if (why := problem(key))}
    assert not problems, problems
    units = {metric["name"]: metric["unit"] for metric in otlp.metrics}
    assert {name: unit for name, unit in units.items() if not _UCUM.fullmatch(unit or "1")} == {}
    assert units["rag.cost"] == "{USD}" and units["http.server.request.duration"] == "s"
