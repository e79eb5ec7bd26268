"""The archive's own promise, on a local folder: an object is only accepted when what is read back is what was
written (its bytes, its row count, its keys); row groups are cut at ROW_GROUP_ROWS whatever the batches."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from otel_rag._store import archive as archive_module
from otel_rag._store.archive import Archive, ArchivedObject, ArchiveMismatch, key_checksum

DAY = dt.date(2026, 11, 3)
SCHEMA = pa.schema([("time", pa.timestamp("us", tz="UTC")), ("trace_id", pa.string()), ("span_id", pa.string())])


def _batches(rows: int, size: int) -> list[pa.RecordBatch]:
    start = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
    times = [start + dt.timedelta(microseconds=i) for i in range(rows)]
    traces = [f"{i // 3:032x}" for i in range(rows)]
    spans = [f"{i:016x}" for i in range(rows)]
    table = pa.table([times, traces, spans], schema=SCHEMA)
    batches: list[pa.RecordBatch] = table.to_batches(max_chunksize=size)
    return batches


def _written(tmp_path: Path, rows: int = 1000) -> tuple[Archive, ArchivedObject]:
    archive = Archive(f"file://{tmp_path}/archive")
    written = archive.write("spans", DAY, 0, schema=SCHEMA, batches=iter(_batches(rows, 300)), id_column="span_id")
    return archive, written


def test_an_object_is_keyed_by_day_and_part_and_its_keys_checksum_is_the_rows(tmp_path: Path) -> None:
    _, written = _written(tmp_path)
    assert written.key.startswith("signal=spans/dt=2026-11-03/part-0-") and written.row_count == 1000
    rows = pa.Table.from_batches(_batches(1000, 1000))
    expected = key_checksum(
        rows.column("trace_id").to_pylist(),
        [int(t.timestamp() * 1_000_000) for t in rows.column("time").to_pylist()],
        rows.column("span_id").to_pylist(),
    )
    assert written.key_checksum == expected
    assert (tmp_path / "archive" / written.key).stat().st_size == written.size


def test_row_groups_are_cut_at_the_configured_size_whatever_the_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_module, "ROW_GROUP_ROWS", 256)
    _, written = _written(tmp_path)  # batches of 300
    metadata = pq.ParquetFile(tmp_path / "archive" / written.key).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [256, 256, 256, 232]


def test_what_is_read_back_must_be_what_was_written(tmp_path: Path) -> None:
    archive, written = _written(tmp_path)
    archive.verify(written, "span_id")  # as written: accepted
    with pytest.raises(ArchiveMismatch, match="keys read back differ"):
        archive.verify(dataclasses.replace(written, key_checksum=written.key_checksum + 1), "span_id")
    with pytest.raises(ArchiveMismatch, match="1000 rows read back, 1001 written"):
        archive.verify(dataclasses.replace(written, row_count=1001), "span_id")
    path = tmp_path / "archive" / written.key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one bit flipped in the middle of the object
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveMismatch, match="another sha256"):
        archive.verify(written, "span_id")


def test_an_archive_url_must_be_s3_or_an_absolute_folder(tmp_path: Path) -> None:
    for url in ("http://bucket/x", "s3:///no-bucket", "file://"):
        with pytest.raises(ValueError, match="archive"):
            Archive(url)
    assert Archive(f"file://{tmp_path}/new/folder").url.endswith("/new/folder")
    assert (tmp_path / "new" / "folder").is_dir()
