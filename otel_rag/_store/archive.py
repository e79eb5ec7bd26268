"""The cold archive: whole days of the store as Parquet objects in S3 or a local folder.

Objects are keyed Hive-style, `signal=logs/dt=2026-11-03/part-<n>-<checksum>.parquet`, zstd-compressed, with the
table's columns (jsonb as JSON text, uuid as text), sorted by `(trace_id, time)` in row groups of
`ROW_GROUP_ROWS` rows: each row group's min/max statistics on `trace_id` let a reader that looks for one trace skip
every row group whose range does not hold it.

Every object is checked after it is written: its bytes read back from the archive must have the sha256 of what was
uploaded, its Parquet footer the row count, and its key columns the key checksum computed from Postgres. Only then
does the retention job record it, and only then may rows leave Postgres.

pyarrow (the `archive` extra) is imported here only: the app never loads it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

__all__ = [
    "ROW_GROUP_ROWS",
    "Archive",
    "ArchiveMismatch",
    "ArchivedObject",
    "arrow_type",
    "key_checksum",
]

ROW_GROUP_ROWS = 16_384
_READ_CHUNK = 1 << 20


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise RuntimeError("the archive needs pyarrow: pip install 'otel-rag[archive]'") from None
    return pyarrow


@dataclass(frozen=True)
class ArchivedObject:
    """One verified object: where it is, what it holds, and the checksums that proved it."""

    key: str
    row_count: int
    key_checksum: int
    sha256: str
    size: int


def arrow_type(pg_type: str, precision: int | None, scale: int | None) -> pa.DataType:
    """The Arrow type of a store column, from its Postgres type (information_schema's data_type)."""
    pa = _pyarrow()
    simple = {
        "timestamp with time zone": pa.timestamp("us", tz="UTC"),
        "smallint": pa.int16(),
        "integer": pa.int32(),
        "bigint": pa.int64(),
        "double precision": pa.float64(),
        "real": pa.float32(),
        "boolean": pa.bool_(),
    }
    if pg_type in simple:
        return simple[pg_type]
    if pg_type == "numeric":
        return pa.decimal128(precision or 38, scale or 0)
    return pa.string()  # text, uuid, jsonb (as JSON text)


def key_checksum(trace_ids: Iterable[str | None], times_us: Iterable[int], ids: Iterable[str]) -> int:
    """An order-independent checksum of rows' keys: the sum of the first 60 bits of md5("trace|epoch_us|id").

    The retention job computes the same sum in SQL over a partition (retention_steps.py, `_KEY_CHECKSUM`), so the
    archive's keys and the store's keys can be compared without moving the rows.
    """
    total = 0
    md5 = hashlib.md5
    for trace_id, time_us, row_id in zip(trace_ids, times_us, ids, strict=True):
        digest = md5(f"{trace_id or ''}|{time_us}|{row_id}".encode(), usedforsecurity=False).hexdigest()
        total += int(digest[:15], 16)
    return total


def _batch_checksum(batch: pa.RecordBatch | pa.Table, id_column: str) -> int:
    pa = _pyarrow()
    times = batch.column("time").cast(pa.int64()).to_pylist()
    return key_checksum(batch.column("trace_id").to_pylist(), times, batch.column(id_column).to_pylist())


class Archive:
    """An archive location: `s3://bucket/prefix` (credentials, region and endpoint from the AWS_* variables,
    AWS_ENDPOINT_URL included) or `file:///path`."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        pa = _pyarrow()
        import pyarrow.fs as pafs

        self.url = url
        if parsed.scheme == "file":
            self._fs: pafs.FileSystem = pafs.LocalFileSystem()
            self._root = unquote(parsed.path).rstrip("/")
            if not self._root:
                raise ValueError(f"{url}: a file:// archive needs an absolute folder")
            os.makedirs(self._root, exist_ok=True)
        elif parsed.scheme == "s3":
            if not parsed.netloc:
                raise ValueError(f"{url}: an s3:// archive needs a bucket")
            self._fs = pafs.S3FileSystem(**_s3_options())
            self._root = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
        else:
            raise ValueError(f"{url}: the archive URL must start with s3:// or file://")
        self._pa = pa

    def path(self, key: str) -> str:
        return f"{self._root}/{key}"

    @staticmethod
    def object_key(signal: str, day: dt.date, part: int, checksum: int) -> str:
        return f"signal={signal}/dt={day.isoformat()}/part-{part}-{checksum:016x}.parquet"

    def write(
        self,
        signal: str,
        day: dt.date,
        part: int,
        *,
        schema: pa.Schema,
        batches: Iterator[pa.RecordBatch],
        id_column: str,
    ) -> ArchivedObject:
        """Write sorted batches as one object, read it back and verify it; the object's key names its checksum."""
        pq = self._pa.parquet
        rows = checksum = 0
        with tempfile.TemporaryDirectory(prefix="otel-rag-archive-") as folder:
            local = os.path.join(folder, "part.parquet")
            with pq.ParquetWriter(local, schema, compression="zstd", write_statistics=True) as writer:
                pending: list[pa.RecordBatch] = []
                for batch in batches:
                    rows += batch.num_rows
                    checksum += _batch_checksum(batch, id_column)
                    pending.append(batch)
                    if sum(item.num_rows for item in pending) >= ROW_GROUP_ROWS:
                        pending = _write_groups(writer, pending, final=False)
                _write_groups(writer, pending, final=True)
            digest, size = _sha256_of(open(local, "rb"))  # noqa: SIM115 - closed by _sha256_of
            key = self.object_key(signal, day, part, checksum % (1 << 64))
            self._fs.create_dir(self.path(key).rsplit("/", 1)[0], recursive=True)
            with open(local, "rb") as source, self._fs.open_output_stream(self.path(key)) as target:
                while chunk := source.read(_READ_CHUNK):
                    target.write(chunk)
        written = ArchivedObject(key, rows, checksum, digest, size)
        self.verify(written, id_column)
        return written

    def verify(self, expected: ArchivedObject, id_column: str) -> None:
        """Read the object back from the archive: bytes, row count and key checksum must be what was written."""
        with self._fs.open_input_stream(self.path(expected.key)) as stream:
            digest, size = _sha256_of(stream)
        if (digest, size) != (expected.sha256, expected.size):
            raise ArchiveMismatch(f"{expected.key}: read back {size} bytes with another sha256 than written")
        table = self.read_keys(expected.key, id_column)
        if table.num_rows != expected.row_count:
            raise ArchiveMismatch(f"{expected.key}: {table.num_rows} rows read back, {expected.row_count} written")
        if _batch_checksum(table, id_column) != expected.key_checksum:
            raise ArchiveMismatch(f"{expected.key}: the keys read back differ from the rows written")

    def read_keys(self, key: str, id_column: str) -> pa.Table:
        """Only the key columns of one object (a few percent of its bytes)."""
        with self._fs.open_input_file(self.path(key)) as source:
            return self._pa.parquet.read_table(source, columns=["trace_id", "time", id_column])

    def read_all(self, key: str) -> pa.Table:
        with self._fs.open_input_file(self.path(key)) as source:
            return self._pa.parquet.read_table(source)

    def scan(self, keys: list[str], predicate: Any) -> pa.Table:
        """The rows of these objects that match a pyarrow.dataset expression. Row groups whose min/max statistics
        rule the predicate out are not read (a trace id lookup reads one row group per object)."""
        import pyarrow.dataset as pads

        if not keys:
            raise ValueError("no archive objects to scan")
        dataset = pads.dataset([self.path(key) for key in keys], filesystem=self._fs, format="parquet")
        return dataset.to_table(filter=predicate)

    def remove_unrecorded(self, signal: str, day: dt.date, part: int, recorded: set[str]) -> None:
        """Delete this part's objects that the manifest does not record: leftovers of a run killed between its
        upload and its record, so a re-run leaves the archive exactly as an uninterrupted run would."""
        import pyarrow.fs as pafs

        folder = self.path(f"signal={signal}/dt={day.isoformat()}")
        found = self._fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        prefix = f"part-{part}-"
        for info in found:
            key = info.path.removeprefix(self._root + "/")
            if info.base_name.startswith(prefix) and key not in recorded:
                self._fs.delete_file(info.path)

    def delete(self, key: str) -> None:
        import pyarrow.fs as pafs

        info = self._fs.get_file_info(self.path(key))
        if info.type != pafs.FileType.NotFound:
            self._fs.delete_file(self.path(key))


def _write_groups(writer: Any, batches: list[pa.RecordBatch], *, final: bool) -> list[pa.RecordBatch]:
    """Write whole row groups of ROW_GROUP_ROWS rows (and, when `final`, the rest); return what is left over."""
    pa = _pyarrow()
    if not batches:
        return []
    table = pa.Table.from_batches(batches)
    whole = table.num_rows if final else table.num_rows - table.num_rows % ROW_GROUP_ROWS
    if whole:
        writer.write_table(table.slice(0, whole), row_group_size=ROW_GROUP_ROWS)
    return table.slice(whole).to_batches() if whole < table.num_rows else []


class ArchiveMismatch(RuntimeError):
    """An object read back from the archive is not what was written: nothing may leave Postgres."""


def _sha256_of(stream: Any) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with stream:
        while chunk := stream.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _s3_options() -> dict[str, Any]:
    """The endpoint and region of S3 from the standard AWS_* variables, which pyarrow's S3 client does not read
    itself; credentials come from the AWS SDK's own chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a
    profile, an instance or pod role)."""
    options: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint)
        options["endpoint_override"] = parsed.netloc or endpoint
        options["scheme"] = parsed.scheme or "https"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    return options
