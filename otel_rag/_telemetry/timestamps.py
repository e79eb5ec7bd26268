"""UTC timestamps formatted once per second: log lines and store rows come many to a second."""

from __future__ import annotations

import time


class UtcSeconds:
    """`YYYY-MM-DDTHH:MM:SS` (UTC) of a Unix second, formatted once per second.

    The cache is one (second, text) tuple replaced whole, so threads sharing it never pair one second's text with
    another second.
    """

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, second: int) -> str:
        cached_second, text = self._cached
        if second != cached_second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, text)
        return text
