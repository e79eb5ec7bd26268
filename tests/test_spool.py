"""The spool on its own, on a real file system: frames, segments, sizes, fsync policies, adoption of a dead
process's segments, damaged files, quarantine (written against the mutants that survived the sink tests, see
docs/testing.md)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from otel_rag._store import spool as spool_module
from otel_rag._store.spool import _HEADER, Spool, read_segment

ROW = ("2026-01-01T00:00:00+00:00", "id", None, "text")


def _frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _frame_size(item: Any) -> int:
    return len(_frame(json.dumps(item, separators=(",", ":")).encode()))


def test_items_go_out_in_the_order_they_came_and_sizes_add_up(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, owner="me")
    assert not spool.has_data() and spool.size == 0 and spool.oldest() is None
    assert spool.append([("log", ROW), ("span", ("a", 1))]) == (2, 0)
    assert spool.append([]) == (0, 0)
    expected = _frame_size(["log", list(ROW)]) + _frame_size(["span", ["a", 1]])
    assert spool.size == expected and spool.has_data()
    segment = spool.oldest()
    assert segment is not None and segment.items == [("log", ROW), ("span", ("a", 1))] and segment.corrupted == 0
    assert segment.path.stat().st_size == expected
    spool.append([("log", ("later",))])  # a new segment: the oldest was closed for reading
    assert len(spool.segments()) == 2
    spool.remove(segment)
    assert spool.size == _frame_size(["log", ["later"]])
    spool.remove(segment)  # twice: nothing happens, the size stays
    assert spool.size == _frame_size(["log", ["later"]])
    newer = spool.oldest()
    assert newer is not None and newer.items == [("log", ("later",))]
    spool.remove(newer)
    assert spool.size == 0 and not spool.has_data()


def test_the_size_limit_refuses_exactly_what_does_not_fit(tmp_path: Path) -> None:
    one = _frame_size(["log", list(ROW)])
    spool = Spool(tmp_path, 2 * one, owner="me")
    assert spool.append([("log", ROW)] * 3) == (2, 1)  # the third would pass the limit by one frame
    assert spool.size == 2 * one
    assert spool.append([("log", ROW)]) == (0, 1)
    assert len(spool.oldest().items) == 2  # type: ignore[union-attr]


def test_a_full_segment_is_closed_and_the_next_append_starts_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = _frame_size(["log", list(ROW)])
    monkeypatch.setattr(spool_module, "_SEGMENT_BYTES", 2 * one)
    spool = Spool(tmp_path, 1 << 20, owner="me", fsync="never")
    spool.append([("log", ROW)])
    assert len(spool.segments()) == 1 and spool._current is not None
    spool.append([("log", ROW)])  # reaches the segment size exactly: closed
    assert spool._current is None
    spool.append([("log", ROW)])
    assert [read_segment(path).items.__len__() for path in spool.segments()] == [2, 1]
    names = [path.name for path in spool.segments()]
    assert names == sorted(names) and names[0].endswith("-000001.seg") and names[1].endswith("-000002.seg")


@pytest.mark.parametrize(("policy", "appends", "expected"), [("always", 3, 3), ("interval", 3, 1), ("never", 3, 0)])
def test_fsync_policies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, appends: int, expected: int
) -> None:
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    spool = Spool(tmp_path, 1 << 20, fsync=policy, owner="me")
    for _ in range(appends):
        spool.append([("log", ROW)])
    assert len(calls) == expected
    calls.clear()
    spool.close()  # closing the current segment forces it to disk, unless the policy is never
    assert len(calls) == (0 if policy == "never" else 1)


def test_interval_fsync_happens_again_after_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    spool = Spool(tmp_path, 1 << 20, fsync="interval", owner="me")
    spool.append([("log", ROW)])
    clock[0] += 0.999
    spool.append([("log", ROW)])
    assert len(calls) == 1
    clock[0] += 0.001
    spool.append([("log", ROW)])
    assert len(calls) == 2


def test_a_dead_process_spool_is_adopted_and_a_live_one_left_alone(tmp_path: Path) -> None:
    dead = Spool(tmp_path, 1 << 20, owner="dead")
    dead.append([("log", ("from the dead",))])
    dead.quarantine([("log", ("bad",))], "refused")
    dead._close_current()
    alive = Spool(tmp_path, 1 << 20, owner="alive")
    alive.append([("log", ("from the living",))])
    fcntl.flock(dead._lock_file, fcntl.LOCK_UN)  # as when its process died
    heir = Spool(tmp_path, 1 << 20, owner="heir")
    assert heir.size == _frame_size(["log", ["from the dead"]])
    assert [segment.name for segment in heir.segments()] == [path.name for path in heir.dir.glob("*.seg")]
    assert (heir.dir / "dead-poison.jsonl").exists()
    assert not (tmp_path / "dead").exists()
    assert (tmp_path / "alive").exists() and alive.segments()  # its owner holds the lock
    assert heir.adopt_orphans() == 0
    (tmp_path / "stray-file").write_text("not a spool")  # a file in the root is not an owner
    assert heir.adopt_orphans() == 0


def test_adoption_counts_segments(tmp_path: Path) -> None:
    dead = Spool(tmp_path, 1 << 20, owner="dead", fsync="never")
    for index in range(3):
        dead.append([("log", (str(index),))])
        dead._close_current()
    fcntl.flock(dead._lock_file, fcntl.LOCK_UN)
    heir = Spool(tmp_path, 1 << 20, owner="heir")
    assert len(heir.segments()) == 3
    again = Spool(tmp_path, 1 << 20, owner="dead2")
    dead_again = Spool(tmp_path, 1 << 20, owner="dead3")
    dead_again.append([("log", ("x",))])
    dead_again._close_current()
    fcntl.flock(dead_again._lock_file, fcntl.LOCK_UN)
    assert again.adopt_orphans() == 1


def test_a_damaged_segment_keeps_what_is_readable(tmp_path: Path) -> None:
    good = _frame(b'["log",["one"]]')
    not_ours = _frame(b'{"not": "a row"}')
    wrong_kind = _frame(b'["metric",["x"]]')
    not_a_list = _frame(b'["log","x"]')
    not_json = _frame(b"\xff\xfe")
    after = _frame(b'["span",["two"]]')
    path = tmp_path / "a.seg"
    path.write_bytes(good + not_ours + wrong_kind + not_a_list + not_json + after)
    segment = read_segment(path)
    assert segment.items == [("log", ("one",)), ("span", ("two",))] and segment.corrupted == 4
    bad_checksum = bytearray(good)
    bad_checksum[-2] ^= 0xFF
    path.write_bytes(good + bytes(bad_checksum) + after)
    assert (read_segment(path).items, read_segment(path).corrupted) == ([("log", ("one",))], 1)
    path.write_bytes(good + after[:-3])  # cut short in the middle of a frame
    assert (read_segment(path).items, read_segment(path).corrupted) == ([("log", ("one",))], 1)
    path.write_bytes(good + after[:5])  # a header cut short
    assert (read_segment(path).items, read_segment(path).corrupted) == ([("log", ("one",))], 1)
    path.write_bytes(good)
    assert read_segment(path).corrupted == 0


def test_quarantine_keeps_each_record_with_its_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, owner="me")
    spool.quarantine([("log", ("a", 1)), ("span", {"unconvertible": "x"})], "why not")  # type: ignore[list-item]
    spool.quarantine([("log", ("b",))], "another")
    lines = [json.loads(line) for line in (spool.dir / "poison.jsonl").read_text().splitlines()]
    assert lines == [
        {"reason": "why not", "kind": "log", "row": ["a", 1]},
        {"reason": "why not", "kind": "span", "row": {"unconvertible": "x"}},
        {"reason": "another", "kind": "log", "row": ["b"]},
    ]
    assert spool.size == 0  # not part of what is replayed


def test_close_removes_an_empty_folder_and_keeps_one_with_data(tmp_path: Path) -> None:
    empty = Spool(tmp_path, 1 << 20, owner="empty")
    empty.close()
    assert not (tmp_path / "empty").exists()
    kept = Spool(tmp_path, 1 << 20, owner="kept")
    kept.append([("log", ROW)])
    kept.close()
    assert (tmp_path / "kept").exists() and read_segment(next((tmp_path / "kept").glob("*.seg"))).items
    poisoned = Spool(tmp_path, 1 << 20, owner="poisoned")
    poisoned.quarantine([("log", ROW)], "r")
    poisoned.close()
    assert (tmp_path / "poisoned" / "poison.jsonl").exists()


def test_after_fork_the_child_leaves_the_parents_lock_held(tmp_path: Path) -> None:
    parent = Spool(tmp_path, 1 << 20, owner="parent")
    parent.append([("log", ROW)])
    duplicate = os.dup(parent._lock_file.fileno())  # the parent's own descriptor stays open
    parent.release_after_fork()  # the child closes its inherited copy, without unlocking
    assert parent._current is None
    other = Spool(tmp_path, 1 << 20, owner="other")
    assert other.size == 0  # the lock is still held through the parent's descriptor: not adopted
    os.close(duplicate)
    assert other.adopt_orphans() == 1
    assert other.has_data() and other.size == parent.size > 0  # counted: a running writer replays it


def test_the_default_policy_syncs_every_append_and_names_the_folder_by_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    spool = Spool(tmp_path, 1 << 20)
    spool.append([("log", ROW)])
    spool.append([("log", ROW)])
    assert len(calls) == 2
    assert re.fullmatch(rf"{os.getpid()}-[0-9a-f]{{8}}", spool.dir.name)


def test_every_refused_item_is_counted(tmp_path: Path) -> None:
    one = _frame_size(["log", list(ROW)])
    spool = Spool(tmp_path, 2 * one, owner="me")
    assert spool.append([("log", ROW)] * 5) == (2, 3)


def test_adoption_returns_how_many_segments_it_took_and_passes_live_owners(tmp_path: Path) -> None:
    live = [Spool(tmp_path, 1 << 20, owner=f"live-{index:02d}") for index in range(20)]
    dead = Spool(tmp_path, 1 << 20, owner="dead", fsync="never")
    for index in range(3):
        dead.append([("log", (str(index),))])
        dead._close_current()
    fcntl.flock(dead._lock_file, fcntl.LOCK_UN)
    heir = live[0]
    assert heir.adopt_orphans() == 3  # whatever order the folders come in, the live ones are passed over
    assert len(heir.segments()) == 3


def test_a_quarantined_row_may_hold_values_json_has_no_type_for(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, owner="me")
    spool.quarantine([("log", ("x", b"raw bytes"))], "refused")
    (line,) = (spool.dir / "poison.jsonl").read_text().splitlines()
    assert json.loads(line)["row"] == ["x", "b'raw bytes'"]


def test_a_folder_made_by_someone_else_is_made_private(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    spool = Spool(root, 1 << 20, owner="me")
    assert (root.stat().st_mode & 0o777, spool.dir.stat().st_mode & 0o777) == (0o700, 0o700)


def test_corruption_is_counted_across_kinds_of_damage(tmp_path: Path) -> None:
    good = _frame(b'["log",["one"]]')
    not_ours = _frame(b'{"not": "a row"}')
    bad_checksum = bytearray(_frame(b'["log",["two"]]'))
    bad_checksum[-2] ^= 0xFF
    path = tmp_path / "a.seg"
    path.write_bytes(good + not_ours + bytes(bad_checksum))
    assert (read_segment(path).items, read_segment(path).corrupted) == ([("log", ("one",))], 2)
    empty_payload = _HEADER.pack(0, zlib.crc32(b""))
    path.write_bytes(good + not_ours + empty_payload)  # a last frame of nothing but its header
    assert (read_segment(path).items, read_segment(path).corrupted) == ([("log", ("one",))], 2)


def test_an_orphan_that_vanishes_while_adopted_does_not_stop_the_others(tmp_path: Path) -> None:
    def orphan(owner: str) -> None:
        dead = Spool(tmp_path, 1 << 20, owner=owner, fsync="never")
        dead.append([("log", (owner,))])
        dead._close_current()
        fcntl.flock(dead._lock_file, fcntl.LOCK_UN)

    orphan("a-dead")
    orphan("b-dead")
    vanished = tmp_path / "c-vanished"  # its lock leads nowhere: as if another heir removed it meanwhile
    vanished.mkdir()
    (vanished / "lock").symlink_to(tmp_path / "gone" / "lock")
    orphan("d-dead")
    orphan("e-dead")
    heir = Spool(tmp_path, 1 << 20, owner="heir")
    assert len(heir.segments()) == 4  # whatever order the folders come in


_FULL_DISK_SCENARIO = """
import json, subprocess, sys
from pathlib import Path
from otel_rag._store.spool import Spool

root = Path(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(root)], check=True)
spool = Spool(root / "spool", 1 << 30, fsync="always", owner="me")
stored, failed = [], []
for index in range(400):  # about 120 KiB of frames for 64 KiB of disk
    try:
        spool.append([("log", [str(index), "x" * 250])])
        stored.append(index)
    except OSError:
        failed.append(index)
size_full, bytes_full = spool.size, sum(path.stat().st_size for path in spool.segments())
first = spool.oldest()
spool.remove(first)  # replayed: the space is free again
for index in range(400, 450):
    spool.append([("log", [str(index), "y" * 250])])
second = spool.oldest()
print(json.dumps({
    "stored": stored, "failed": len(failed), "size_full": size_full, "bytes_full": bytes_full,
    "size_after": spool.size,
    "first": [int(item[1][0]) for item in first.items], "first_corrupted": first.corrupted,
    "second": [int(item[1][0]) for item in second.items], "second_corrupted": second.corrupted,
    "second_bytes": second.path.stat().st_size,
}))
"""


@pytest.mark.integration  # a child process
def test_a_full_disk_refuses_whole_records_and_the_spool_reads_back_exactly_what_it_accepted(
    tmp_path: Path,
) -> None:
    """A real full disk: a 64 KiB tmpfs, mounted in a private user and mount namespace (no privileges needed)."""
    (tmp_path / "disk").mkdir()
    result = subprocess.run(
        ["unshare", "--map-root-user", "--mount", sys.executable, "-c", _FULL_DISK_SCENARIO, str(tmp_path / "disk")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["failed"] > 0 and len(outcome["stored"]) > 100  # the disk did fill up
    assert outcome["first"] == outcome["stored"] and outcome["first_corrupted"] == 0  # no torn or repeated record
    assert outcome["second"] == list(range(400, 450)) and outcome["second_corrupted"] == 0
    assert outcome["size_full"] == outcome["bytes_full"]  # the size it reports is what is on disk
    assert outcome["size_after"] == outcome["second_bytes"]
