"""The Parquet lake: table schemas, layout and atomic writes.

Layout (hive-style, readable by pyarrow datasets and DuckDB)::

    LAKE/detections/config_hash=<h>/<video_id>.parquet
    LAKE/clips/config_hash=<h>/<video_id>.parquet
    LAKE/videos/config_hash=<h>/<video_id>.parquet
    LAKE/runs/<run_id>.parquet

A file is written under a temporary name and renamed into place, so readers never see
half a file. The same video, content and config always map to the same path, so a rerun
replaces its files instead of adding duplicates.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import LakeError

__all__ = [
    "SCHEMA_VERSION", "SCHEMAS", "TABLES", "DETECTIONS", "CLIPS", "VIDEOS", "RUNS",
    "table_path", "write_table", "ParquetSink", "check_writable",
]

SCHEMA_VERSION = "1"

DETECTIONS = pa.schema([
    ("video_id", pa.string()),
    ("frame_index", pa.int64()),
    ("t_s", pa.float64()),
    ("track_id", pa.int64()),
    ("class_id", pa.int32()),
    ("class_name", pa.string()),
    ("confidence", pa.float32()),
    ("x1", pa.float32()),
    ("y1", pa.float32()),
    ("x2", pa.float32()),
    ("y2", pa.float32()),
    ("run_id", pa.string()),
])

CLIPS = pa.schema([
    ("video_id", pa.string()),
    ("clip_index", pa.int64()),
    ("t_start_s", pa.float64()),
    ("t_end_s", pa.float64()),
    ("track_id", pa.int64()),
    ("action", pa.string()),
    ("action_confidence", pa.float32()),
    ("action_probs", pa.list_(pa.float32())),
    ("n_frames", pa.int32()),
    ("run_id", pa.string()),
])

VIDEOS = pa.schema([
    ("video_id", pa.string()),
    ("uri", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("warning", pa.string()),
    ("duration_s", pa.float64()),
    ("fps", pa.float64()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("codec", pa.string()),
    ("frames_analyzed", pa.int64()),
    ("n_detections", pa.int64()),
    ("n_tracks", pa.int64()),
    ("n_clips", pa.int64()),
    ("wall_s", pa.float64()),
    ("run_id", pa.string()),
])

RUNS = pa.schema([
    ("run_id", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
    ("config", pa.string()),
    ("config_hash", pa.string()),
    ("detector", pa.string()),
    ("detector_sha256", pa.string()),
    ("action_model", pa.string()),
    ("action_model_sha256", pa.string()),
    ("action_classes", pa.list_(pa.string())),
    ("videos_ok", pa.int64()),
    ("videos_failed", pa.int64()),
    ("frames_analyzed", pa.int64()),
    ("wall_s", pa.float64()),
])

SCHEMAS: dict[str, pa.Schema] = {"detections": DETECTIONS, "clips": CLIPS, "videos": VIDEOS, "runs": RUNS}
TABLES = tuple(SCHEMAS)
_PARTITIONED = {"detections", "clips", "videos"}
_ROW_GROUP_ROWS = 128 * 1024


def table_path(lake: str | os.PathLike[str], table: str, name: str, config_hash: str | None = None) -> Path:
    """Where a file of ``table`` lives; ``name`` is the video_id or run_id."""
    if table not in SCHEMAS:
        raise LakeError(f"unknown lake table {table!r}")
    base = Path(lake) / table
    if table in _PARTITIONED:
        if not config_hash:
            raise LakeError(f"table {table} is partitioned by config_hash; none given")
        base = base / f"config_hash={config_hash}"
    return base / f"{name}.parquet"


def _schema_with_version(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({**(schema.metadata or {}), b"videolake.schema_version": SCHEMA_VERSION.encode()})


def check_writable(lake: str | os.PathLike[str]) -> None:
    """Fail early, with the path in the message, when the lake cannot be written."""
    root = Path(lake)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-check-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LakeError(f"lake {root} is not writable: {exc.strerror or exc}") from None


class ParquetSink:
    """Streams rows of one table into one Parquet file; the file appears only on ``close``.

    Use as a context manager: on an exception the temporary file is removed and nothing
    appears at ``path``.
    """

    def __init__(self, path: str | os.PathLike[str], table: str, row_group_rows: int = _ROW_GROUP_ROWS) -> None:
        self.path = Path(path)
        self.schema = _schema_with_version(SCHEMAS[table])
        self.row_group_rows = row_group_rows
        self.rows_written = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._tmp = self.path.parent / f"_tmp-{uuid.uuid4().hex}-{self.path.name}.inprogress"
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, columns: dict[str, Any]) -> None:
        """Append rows given as columns (lists or numpy arrays) keyed by field name."""
        table = pa.Table.from_pydict({f.name: _column(columns[f.name], f.type) for f in self.schema}, schema=self.schema)
        if table.num_rows == 0:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._writer is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
            except OSError as exc:
                raise LakeError(f"cannot write {self.path}: {exc}") from None
        self._writer.write_table(pa.concat_tables(self._pending), row_group_size=self.row_group_rows)
        self.rows_written += self._pending_rows
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        if self._writer is None:  # no rows: still write an empty file so the video's output is explicit
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        self._writer.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


def write_table(path: str | os.PathLike[str], table: str, rows: list[dict[str, Any]]) -> Path:
    """Write a small table from row dicts atomically."""
    columns = {f.name: [row.get(f.name) for row in rows] for f in SCHEMAS[table]}
    with ParquetSink(path, table) as sink:
        sink.write(columns)
    return Path(path)


def _column(values: Any, kind: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, np.ndarray) and not pa.types.is_list(kind):
        return pa.array(values, type=kind, from_pandas=True)
    return pa.array(list(values), type=kind)


def iter_lake_files(lake: str | os.PathLike[str], table: str) -> Iterator[Path]:
    root = Path(lake) / table
    if root.is_dir():
        yield from sorted(root.rglob("*.parquet"))
