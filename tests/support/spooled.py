"""Log rows and spools as the sink leaves them on disk, for tests that write or replay them directly."""

from __future__ import annotations

import time
import uuid
from typing import Any

from otel_rag._store.spool import Spool


def log_row(body: str, when: str | None = None, record_id: str | None = None) -> tuple[Any, ...]:
    """A row of the logs table (the sink's column order), stamped now unless `when` is given."""
    stamp = when or time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
    record = record_id or str(uuid.uuid4())
    return (stamp, record, None, None, "svc", None, "info", 9, None, body, "{}", "{}", None, None, None)


def leave_as_killed(spool: Spool) -> None:
    """Leave a spool as a killed process would: its segments on disk, its lock free for an heir to adopt."""
    spool.release_after_fork()
    (spool.dir / "lock").unlink()
