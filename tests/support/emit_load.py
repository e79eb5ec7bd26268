"""A process that logs numbered events through otel-rag into the Postgres sink, for outage and restart tests.

    python -m tests.support.emit_load --count N --rate R [--hold]

Configured by the environment like any service (OTEL_RAG_POSTGRES_DSN, OTEL_LOGS_EXPORTER=postgres, ...). At the
end it flushes and prints one JSON line with the writer's counters; with --hold it then waits to be killed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import otel_rag
from otel_rag._store import writer as writer_module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--flush-timeout", type=float, default=60.0)
    args = parser.parse_args()
    otel_rag.configure()
    log = otel_rag.get_logger("load")
    started = time.monotonic()
    for seq in range(args.count):
        log.info("load.event", seq=seq)
        delay = started + (seq + 1) / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    writers = list(writer_module._shared.values())
    flushed = all(writer.force_flush(args.flush_timeout) for writer in writers)
    stats = {key: value for writer in writers for key, value in writer.stats.items()}
    sys.stderr.write(json.dumps({"flushed": flushed, "stats": stats}) + "\n")
    sys.stderr.flush()
    if args.hold:
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main()
