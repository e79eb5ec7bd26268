"""A durable, size-bounded FIFO of rows on local disk, for when Postgres cannot take them.

Layout: `<spool dir>/<owner>/` per process, holding a `lock` file (an exclusive flock while the process lives) and
segment files named by creation time (`<ns>-<seq>.seg`), so they sort oldest first even across processes. A segment
is a sequence of frames: 4-byte big-endian length, 4-byte CRC-32 of the payload, payload (JSON `[kind, row]`).
A frame that is cut short (crash while writing) or fails its checksum ends the readable part of that segment; the
frames before it are kept. A process that starts adopts the segments of owners whose lock is free (they died), so
a restart replays what the previous run spooled. The spool is private to the service's user: folders 0700, files
0600 (spooled records may hold what the app logged). A frame that passes its checksum but does not decode is
skipped and counted, never allowed to stop the replay.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

__all__ = ["Segment", "Spool"]

_HEADER = struct.Struct(">II")
_SEGMENT_BYTES = 16 * 1024 * 1024
Item = tuple[str, tuple[Any, ...]]


@dataclass
class Segment:
    path: Path
    items: list[Item]
    corrupted: int  # frames lost to a checksum mismatch or a cut-short tail


class Spool:
    def __init__(self, directory: Path, max_bytes: int, fsync: str = "always", owner: str | None = None) -> None:
        self.root = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        _private_dir(self.root)
        self.dir = self.root / (owner or f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
        _private_dir(self.dir)
        self._lock_file = _open_private(self.dir / "lock")
        fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock = threading.Lock()
        self._current: BinaryIO | None = None
        self._current_path: Path | None = None
        self._sequence = 0
        self._last_fsync = 0.0
        self._size = sum(path.stat().st_size for path in self.segments())
        self.adopt_orphans()

    @property
    def size(self) -> int:
        return self._size

    def segments(self) -> list[Path]:
        return sorted(self.dir.glob("*.seg"))

    def has_data(self) -> bool:
        return self._size > 0

    def adopt_orphans(self) -> int:
        """Take over the segments of spool owners that are no longer running; returns how many."""
        adopted = 0
        for other in self.root.iterdir():
            if other == self.dir or not other.is_dir():
                continue
            lock_path = other / "lock"
            try:
                with lock_path.open("a+b") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    for segment in sorted(other.glob("*.seg")):
                        size = segment.stat().st_size
                        segment.rename(self.dir / segment.name)
                        with self._lock:  # counted, so that has_data() sends the writer to replay them
                            self._size += size
                        adopted += 1
                    for poison in other.glob("poison*.jsonl"):
                        poison.rename(self.dir / f"{other.name}-{poison.name}")
                shutil.rmtree(other, ignore_errors=True)
            except BlockingIOError:
                continue  # its owner is alive
            except FileNotFoundError:
                continue  # adopted by someone else meanwhile
        return adopted

    def append(self, items: Iterable[Item]) -> tuple[int, int]:
        """Write items durably (per the fsync policy); returns (written, refused for lack of room)."""
        written = refused = 0
        with self._lock:
            frames = []
            for item in items:
                payload = orjson.dumps(item)
                frame = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
                if self._size + len(frame) > self.max_bytes:
                    refused += 1
                    continue
                frames.append(frame)
                self._size += len(frame)
                written += 1
            if frames:
                data = b"".join(frames)
                stream = self._writable()
                start = os.fstat(stream.fileno()).st_size
                try:
                    _write_all(stream, data)
                    self._sync(stream)
                except OSError:  # a full disk, a failed fsync: none of these items is in the spool
                    self._size -= len(data)
                    self._abandon_current(start)
                    raise
                if start + len(data) >= _SEGMENT_BYTES:
                    self._close_current()
        return written, refused

    def _writable(self) -> BinaryIO:
        if self._current is None:
            self._sequence += 1
            self._current_path = self.dir / f"{time.time_ns():020d}-{self._sequence:06d}.seg"
            self._current = _open_private(self._current_path)
        return self._current

    def _sync(self, stream: BinaryIO) -> None:
        now = time.monotonic()
        if self.fsync == "always" or (self.fsync == "interval" and now - self._last_fsync >= 1.0):
            os.fsync(stream.fileno())
            self._last_fsync = now

    def _abandon_current(self, length: int) -> None:
        """Cut a failed write off the segment (no torn frame is left to read back) and start a new segment next."""
        stream, path = self._current, self._current_path
        self._current = self._current_path = None
        if stream is None or path is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(stream.fileno(), length)
        with contextlib.suppress(OSError):
            stream.close()
        if length == 0:
            path.unlink(missing_ok=True)

    def _close_current(self) -> None:
        if self._current is not None:
            if self.fsync != "never":
                os.fsync(self._current.fileno())
            self._current.close()
            self._current = None
            self._current_path = None

    def oldest(self) -> Segment | None:
        """The oldest segment's readable items (the segment being written is closed first).

        A segment the file system will not read (an I/O error, not a file) is renamed `*.unreadable`, out of the
        replay, and returned empty with one corrupted frame: one bad file must not hold back everything after it.
        """
        with self._lock:
            segments = self.segments()
            if not segments:
                return None
            if self._current_path == segments[0]:
                self._close_current()
            path = segments[0]
            try:
                return read_segment(path)
            except OSError:
                with contextlib.suppress(OSError):
                    self._size = max(0, self._size - path.stat().st_size)
                    path.rename(path.with_suffix(".unreadable"))
                return Segment(path, [], corrupted=1)

    def remove(self, segment: Segment) -> None:
        with self._lock:
            try:
                size = segment.path.stat().st_size
                segment.path.unlink()
                self._size = max(0, self._size - size)
            except FileNotFoundError:
                pass

    def quarantine(self, items: Iterable[Item], reason: str) -> None:
        """Keep records that Postgres refuses (poison) for a person to look at, outside the replay path."""
        lines = (orjson.dumps({"reason": reason, "kind": kind, "row": row}, default=str) + b"\n" for kind, row in items)
        with self._lock, _open_private(self.dir / "poison.jsonl") as poison:
            _write_all(poison, b"".join(lines))

    def release_after_fork(self) -> None:
        """In a forked child: drop the inherited lock descriptor without unlocking (the parent still holds it)."""
        self._lock_file.close()
        self._current = None
        self._current_path = None

    def close(self) -> None:
        with self._lock:
            self._close_current()
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            if not any(self.dir.iterdir()) or [p.name for p in self.dir.iterdir()] == ["lock"]:
                shutil.rmtree(self.dir, ignore_errors=True)


def _private_dir(path: Path) -> None:
    """Create the folder (and parents) readable by this user only; tighten one we created earlier."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def _open_private(path: Path) -> BinaryIO:
    """Open for appending, creating the file 0600 (never readable by others, not even for a moment). Unbuffered:
    a write that fails leaves nothing behind in a buffer to be written later, torn, by the next write or close."""
    return cast(BinaryIO, os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab", buffering=0))


def _write_all(stream: BinaryIO, data: bytes) -> None:
    """Write every byte (an unbuffered write may take only part, e.g. when the disk fills up mid-write)."""
    view = memoryview(data)
    while view:
        view = view[stream.write(view) :]


def read_segment(path: Path) -> Segment:
    data = path.read_bytes()
    items: list[Item] = []
    offset = corrupted = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        payload = data[offset + _HEADER.size : offset + _HEADER.size + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            corrupted += 1
            break
        offset += _HEADER.size + length
        try:
            kind, row = orjson.loads(payload)
            if kind not in ("log", "span") or not isinstance(row, list):
                raise ValueError(kind)
        except (ValueError, TypeError):  # intact but not ours to read: skip this frame, keep the rest
            corrupted += 1
            continue
        items.append((kind, tuple(row)))
    if offset < len(data) and corrupted == 0:
        corrupted = 1  # a header cut short
    return Segment(path, items, corrupted)
