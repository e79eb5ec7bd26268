"""The same app under the stock distro and under ours, side by side, each exporting to its own OTLP receiver."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.otlp import OtlpReceiver
from tests.support.postgres import scratch_dir
from tests.support.processes import AppProcess, base_env, launch_uvicorn

DISTROS = {
    # the stock distro with the stock FastAPI and logging instrumentations (installed by the dev extras)
    "stock": {"OTEL_PYTHON_DISTRO": "distro", "OTEL_PYTHON_CONFIGURATOR": "configurator"},
    "otel_rag": {"OTEL_PYTHON_DISTRO": "otel_rag"},
}


@dataclass
class Running:
    app: AppProcess
    receiver: OtlpReceiver
    records: Path  # where tests/support/parity_app.py writes the correlation fields of its log records


@contextmanager
def under_both_distros(case: dict[str, str], *, app_fails: bool = False) -> Iterator[dict[str, Running]]:
    """tests/support/parity_app.py under each distro at once, ready, with `case` added to the environment.

    Afterwards no traceback may be on stderr, unless the test calls the endpoint that fails (`app_fails`)."""
    with ExitStack() as stack:
        running: dict[str, Running] = {}
        for name, distro in DISTROS.items():
            receiver = stack.enter_context(OtlpReceiver())
            records = scratch_dir(f"parity-{name}-") / "records.jsonl"
            env = base_env(
                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",  # the stock default is grpc: one receiver for both
                OTEL_BLRP_SCHEDULE_DELAY="100",
                PARITY_RECORDS=str(records),
                **distro,
                **case,
            )
            app = stack.enter_context(launch_uvicorn(env, app="tests.support.parity_app:app"))
            running[name] = Running(app, receiver, records)
        for each in running.values():
            each.app.wait_ready("/docs")
            each.records.unlink(missing_ok=True)  # only the requests the test sends count
        yield running
        for each in running.values():
            assert app_fails or "Traceback" not in each.app.stderr(), each.app.stderr()
