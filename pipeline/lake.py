"""The Parquet lake: table schemas, layout and atomic writes.

Layout (hive-style, readable by pyarrow datasets and DuckDB)::

    LAKE/<table>/config_hash=<h>/<video_id>/<content_key>-<shard>.parquet   detections, clips, overlaps, ledger
    LAKE/<table>/config_hash=<h>/<video_id>/<content_key>.parquet           videos, track_map
    LAKE/shards/<run_id>/<video_id>.parquet
    LAKE/runs/<run_id>.parquet

``LAKE`` is a folder or a bucket URL (``s3://bucket/prefix``). A file is written to a local
temporary file first, then renamed into place (on disk) or uploaded in one PUT (in a bucket,
atomic per object), so readers never see half a file.
Paths are deterministic from (video, content key, shard range, config hash): a rerun writes
the same paths, never a second copy. A shard counts only once its ``ledger`` file exists:
that file is written last, after the shard's data files.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from videolake.pipeline import storage
from videolake.pipeline.errors import LakeError, VideolakeError

__all__ = [
    "SCHEMA_VERSION", "SCHEMAS", "TABLES", "DETECTIONS", "CLIPS", "VIDEOS", "RUNS",
    "table_path", "write_table", "ParquetSink", "MemorySink", "check_writable",
]

SCHEMA_VERSION = "2"  # 2: keypoints and pose confidence on detections, n_pose_frames on clips

DETECTIONS = pa.schema([
    ("video_id", pa.string()),
    ("content_key", pa.string()),
    ("shard_index", pa.int32()),
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
    # 17 COCO keypoints (pose.KEYPOINT_NAMES order) in frame pixels and their confidences; null without a skeleton.
    ("kp_x", pa.list_(pa.float32())),
    ("kp_y", pa.list_(pa.float32())),
    ("kp_conf", pa.list_(pa.float32())),
    ("pose_confidence", pa.float32()),  # the pose model's confidence that the box holds a person
    # Where the camera was (motion.CameraPose against the shard's first frame): frame = scale * reference + (x, y).
    ("cam_scale", pa.float32()),
    ("cam_x", pa.float32()),
    ("cam_y", pa.float32()),
])

CLIPS = pa.schema([
    ("video_id", pa.string()),
    ("content_key", pa.string()),
    ("shard_index", pa.int32()),
    ("clip_index", pa.int64()),
    ("t_start_s", pa.float64()),
    ("t_end_s", pa.float64()),
    ("track_id", pa.int64()),
    ("action", pa.string()),
    ("action_confidence", pa.float32()),
    ("action_probs", pa.list_(pa.float32())),
    ("n_frames", pa.int32()),
    ("n_pose_frames", pa.int32()),  # frames with a usable skeleton (null: box-only run)
    ("run_id", pa.string()),
])

VIDEOS = pa.schema([
    ("video_id", pa.string()),
    ("content_key", pa.string()),
    ("uri", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("error_kind", pa.string()),
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
    ("shards_total", pa.int32()),
    ("shards_failed", pa.int32()),
    ("finished_at", pa.timestamp("us", tz="UTC")),
    ("run_id", pa.string()),
])

LEDGER = pa.schema([
    ("video_id", pa.string()),
    ("content_key", pa.string()),
    ("shard_index", pa.int32()),
    ("t_start_s", pa.float64()),
    ("t_end_s", pa.float64()),
    ("frames_analyzed", pa.int64()),
    ("n_detections", pa.int64()),
    ("n_clips", pa.int64()),
    ("clips_by_action", pa.string()),
    ("warning", pa.string()),
    ("run_id", pa.string()),
    ("committed_at", pa.timestamp("us", tz="UTC")),
])

OVERLAPS = pa.schema([(f.name, f.type) for f in DETECTIONS
                      if f.name not in ("class_name", "run_id", "kp_x", "kp_y", "kp_conf", "pose_confidence",
                                        "cam_scale", "cam_x", "cam_y")])

TRACK_MAP = pa.schema([
    ("video_id", pa.string()),
    ("content_key", pa.string()),
    ("raw_track_id", pa.int64()),
    ("track_id", pa.int64()),
])

SHARDS = pa.schema([
    ("video_id", pa.string()),
    ("content_key", pa.string()),
    ("shard_index", pa.int32()),
    ("t_start_s", pa.float64()),
    ("t_end_s", pa.float64()),
    ("status", pa.string()),
    ("attempts", pa.int32()),
    ("worker", pa.string()),
    ("node_id", pa.string()),
    ("node_ip", pa.string()),
    ("gpu_ids", pa.list_(pa.string())),
    ("frames_analyzed", pa.int64()),
    ("wall_s", pa.float64()),
    ("error", pa.string()),
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
    ("pose_model", pa.string()),
    ("pose_model_sha256", pa.string()),
    ("features", pa.string()),  # what the actions saw: "pose" (keypoints) or "box" (boxes only; see docs/models.md)
    ("videos_ok", pa.int64()),
    ("videos_failed", pa.int64()),
    ("videos_done_before", pa.int64()),
    ("videos_quarantined", pa.int64()),
    ("shards_total", pa.int64()),
    ("shards_done_before", pa.int64()),
    ("shards_processed", pa.int64()),
    ("shards_failed", pa.int64()),
    ("frames_analyzed", pa.int64()),
    ("wall_s", pa.float64()),
])

SCHEMAS: dict[str, pa.Schema] = {
    "detections": DETECTIONS, "clips": CLIPS, "videos": VIDEOS, "runs": RUNS,
    "ledger": LEDGER, "overlaps": OVERLAPS, "track_map": TRACK_MAP, "shards": SHARDS,
}
TABLES = tuple(SCHEMAS)
_PER_SHARD = {"detections", "clips", "overlaps", "ledger"}
_PER_VIDEO = {"videos", "track_map"}
_ROW_GROUP_ROWS = 128 * 1024


def table_path(
    lake: str | os.PathLike[str], table: str, *, config_hash: str | None = None, video_id: str | None = None,
    content_key: str | None = None, shard_key: str | None = None, run_id: str | None = None,
) -> str:
    """The one place that knows where each table's files live (see the module docstring).

    ``lake`` is a local path or a bucket URL; so is the result.
    """
    root = storage.join(os.fspath(lake), table)
    if table in _PER_SHARD or table in _PER_VIDEO:
        if not (config_hash and video_id and content_key):
            raise LakeError(f"{table} files need config_hash, video_id and content_key")
        base = storage.join(root, f"config_hash={config_hash}", video_id)
        if table in _PER_SHARD:
            if not shard_key:
                raise LakeError(f"{table} files need a shard key")
            return storage.join(base, f"{content_key}-{shard_key}.parquet")
        return storage.join(base, f"{content_key}.parquet")
    if table == "shards":
        if not (run_id and video_id):
            raise LakeError("shards files need run_id and video_id")
        return storage.join(root, run_id, f"{video_id}.parquet")
    if table == "runs":
        if not run_id:
            raise LakeError("runs files need run_id")
        return storage.join(root, f"{run_id}.parquet")
    raise LakeError(f"unknown lake table {table!r}")


def _schema_with_version(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({**(schema.metadata or {}), b"videolake.schema_version": SCHEMA_VERSION.encode()})


def check_writable(lake: str | os.PathLike[str]) -> None:
    """Fail early, naming the lake (never a credential), when it cannot be written."""
    lake = os.fspath(lake)
    if storage.is_remote(lake):
        probe = storage.join(lake, f".write-check-{uuid.uuid4().hex}")
        try:
            storage.write_bytes(probe, b"")
            storage.remove(probe)
        except VideolakeError as exc:
            raise LakeError(f"lake {lake} is not writable: {str(exc).split(': ', 1)[-1]}") from None
        except Exception as exc:  # noqa: BLE001
            raise storage.storage_error(lake, exc, "lake is not writable:") from None
        return
    root = Path(lake)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe_path = root / f".write-check-{uuid.uuid4().hex}"
        probe_path.write_bytes(b"")
        probe_path.unlink()
    except OSError as exc:
        raise LakeError(f"lake {root} is not writable: {exc.strerror or exc}") from None


class ParquetSink:
    """Streams rows of one table into one Parquet file; the file appears only on ``close``.

    Use as a context manager: on an exception the temporary file is removed and nothing
    appears at ``path``.
    """

    def __init__(self, path: str | os.PathLike[str], table: str, row_group_rows: int = _ROW_GROUP_ROWS) -> None:
        self.path = os.fspath(path)
        self.schema = _schema_with_version(SCHEMAS[table])
        self.row_group_rows = row_group_rows
        self.rows_written = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._tmp = storage.tmp_path_for(self.path)
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, columns: dict[str, Any]) -> None:
        """Append rows given as columns (lists or numpy arrays) keyed by field name; ``{}`` writes nothing.

        A column left out is null (e.g. keypoints in a box-only run)."""
        if not columns:
            return
        table = _arrow_table(self.schema, columns)
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
                self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
            except OSError as exc:
                raise LakeError(f"cannot write {self.path}: {exc}") from None
        self._writer.write_table(pa.concat_tables(self._pending), row_group_size=self.row_group_rows)
        self.rows_written += self._pending_rows
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        try:
            self._flush()
            if self._writer is None:  # no rows: still write an empty file so the video's output is explicit
                self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
            self._writer.close()
            storage.put_file(self._tmp, self.path)
        finally:
            self._remove_tmp()

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def _arrow_table(schema: pa.Schema, columns: dict[str, Any]) -> pa.Table:
    """Rows given as columns, in ``schema``; a column left out is null."""
    n = len(next(iter(columns.values())))
    return pa.Table.from_pydict(
        {f.name: _column(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema}, schema=schema)


class MemorySink:
    """A ``ParquetSink`` that keeps its rows in memory: ``table()`` gives them back as one Arrow table."""

    def __init__(self, table: str) -> None:
        self.schema = _schema_with_version(SCHEMAS[table])
        self._parts: list[pa.Table] = []

    def __enter__(self) -> MemorySink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        return None

    def write(self, columns: dict[str, Any]) -> None:
        if columns:
            self._parts.append(_arrow_table(self.schema, columns))

    def table(self) -> pa.Table:
        return pa.concat_tables(self._parts) if self._parts else self.schema.empty_table()


def write_table(path: str | os.PathLike[str], table: str, rows: list[dict[str, Any]]) -> str:
    """Write a small table from row dicts atomically."""
    columns = {f.name: [row.get(f.name) for row in rows] for f in SCHEMAS[table]}
    with ParquetSink(path, table) as sink:
        sink.write(columns)
    return os.fspath(path)


def _column(values: Any, kind: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, np.ndarray) and not pa.types.is_list(kind):
        return pa.array(values, type=kind, from_pandas=True)
    return pa.array(list(values), type=kind)
