"""What the store's questions over a time window share (health, quality, the page's charts): the requests of the
window, the optional filter on one service, and every bucket of a window, empty ones included."""

from __future__ import annotations

import datetime as dt
import math

from psycopg import sql

__all__ = ["ROOTS_IN_WINDOW", "bucket_starts", "service_filter"]

# The requests of a window: root server spans (no parent, or a remote one), as the partial index spans_roots_time has
ROOTS_IN_WINDOW = sql.SQL(
    "(parent_span_id IS NULL OR parent_remote) AND kind = 'SERVER' AND time >= %(start)s AND time < %(end)s"
)


def service_filter(service: bool) -> sql.Composable:
    """` AND service_name = %(service)s` when the question is about one service, else nothing."""
    return sql.SQL(" AND service_name = %(service)s") if service else sql.SQL("")


def bucket_starts(start: dt.datetime, end: dt.datetime, bucket: dt.timedelta) -> list[dt.datetime]:
    """The start of every bucket of [start, end), as `date_bin(bucket, time, start)` numbers them (at least one), so
    a bucket without rows still shows, as zero or as no data."""
    return [start + number * bucket for number in range(max(1, math.ceil((end - start) / bucket)))]
