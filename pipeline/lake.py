"""The lake: Delta tables that any engine reads, the workers' staging files, and ``Lake``.

Layout (``LAKE`` is a folder or a bucket URL, ``s3://bucket/prefix``)::

    LAKE/_videolake.json                         the marker: this folder is a lake (layout 2)
    LAKE/{videos,detections,clips}/              Delta tables, partitioned by config_hash
    LAKE/{runs,shards}/                          Delta tables
    LAKE/_staging/<table>/config_hash=<h>/<video_id>/<content_key>-<shard>.parquet
                                                 detections, clips, overlaps, ledger: one file per shard
                                                 (a table the shard has no rows of: no file)
    LAKE/_staging/commits/<config_hash>/<video_id>.json   a video commit in progress

Workers write a shard's staging files under a temporary name and rename them into place
(one PUT in a bucket); the ``ledger`` file comes last, so a shard is committed exactly when
its ledger file exists. A worker then publishes each finished video: its detections and
clips (track ids stitched, ``camera_id`` and wall-clock ``ts`` added), its ``shards`` rows and
its ``videos`` row, each a Delta transaction that replaces that video's rows
(``lake.commit_video``, see ``videolake.pipeline.commit``). Readers only ever see whole
commits; concurrent writers are serialised by Delta's optimistic concurrency (conditional
writes on buckets) and retry on conflict.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from videolake.pipeline import storage
from videolake.pipeline.errors import ConfigError, LakeError, NotALakeError, VideolakeError

if TYPE_CHECKING:
    import duckdb
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

__all__ = [
    "SCHEMA_VERSION", "LAYOUT_VERSION", "SCHEMAS", "PUBLISHED", "STAGED", "DETECTIONS", "CLIPS", "VIDEOS",
    "RUNS", "published_schema", "table_path", "write_table", "ParquetSink", "MemorySink", "check_writable", "Lake",
]

# 2: keypoints, pose confidence and camera pose on detections, n_pose_frames on clips; 3: carried on detections,
# frames_detected on shards and runs, detector_fraction on runs (older tables gain them as nulls: Lake.write)
SCHEMA_VERSION = "3"
LAYOUT_VERSION = 2
MARKER = "_videolake.json"
STAGING = "_staging"

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
    # The detector did not run on this frame: the box is the track's last detected one (pipeline/gating.py).
    ("carried", pa.bool_()),
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
    ("camera_id", pa.string()),
    ("recorded_at", pa.timestamp("us", tz="UTC")),
    ("recorded_at_source", pa.string()),  # container | filename | sidecar; null when unknown
    ("size_bytes", pa.int64()),
    ("source_version", pa.string()),  # the source's mtime (ns) or ETag when it was last seen
    ("config_hash", pa.string()),
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
                                        "cam_scale", "cam_x", "cam_y", "carried")])

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
    ("frames_detected", pa.int64()),  # of frames_analyzed, those the detector saw (the rest carried)
    ("wall_s", pa.float64()),
    ("error", pa.string()),
    ("run_id", pa.string()),
    ("config_hash", pa.string()),
    ("committed_at", pa.timestamp("us", tz="UTC")),  # when its worker committed the shard (its ledger file)
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
    ("frames_detected", pa.int64()),  # frames the detector saw, of those this run's shards analysed
    ("detector_fraction", pa.float64()),  # frames_detected over the frames this run's shards analysed (null: none)
])

SCHEMAS: dict[str, pa.Schema] = {
    "detections": DETECTIONS, "clips": CLIPS, "videos": VIDEOS, "runs": RUNS,
    "ledger": LEDGER, "overlaps": OVERLAPS, "shards": SHARDS,
}
STAGED = ("detections", "clips", "overlaps", "ledger")    # the workers' per-shard files
PUBLISHED = ("videos", "detections", "clips", "runs", "shards")  # the Delta tables readers see
PARTITION_BY = {"videos": ["config_hash"], "detections": ["config_hash"], "clips": ["config_hash"], "runs": [], "shards": []}
# Columns the driver adds when it publishes staged rows: the stitched id replaces ``track_id``,
# the shard's own id stays as ``raw_track_id``; ``ts`` is the wall-clock time of ``t_s``
# (detections) or ``t_start_s`` (clips) when the video's start time is known.
_PUBLISHED_EXTRA = [
    ("raw_track_id", pa.int64()),
    ("camera_id", pa.string()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("config_hash", pa.string()),
]
TIME_COLUMN = {"detections": "t_s", "clips": "t_start_s"}
_ROW_GROUP_ROWS = 128 * 1024


def published_schema(table: str) -> pa.Schema:
    """The Delta table's schema: the staged columns plus the ones added at publication."""
    if table in TIME_COLUMN:
        return pa.schema(list(SCHEMAS[table]) + [pa.field(n, t) for n, t in _PUBLISHED_EXTRA])
    return SCHEMAS[table]


def table_path(
    lake: str | os.PathLike[str], table: str, *, config_hash: str | None = None, video_id: str | None = None,
    content_key: str | None = None, shard_key: str | None = None,
) -> str:
    """Where a shard's staging file of ``table`` (detections, clips, overlaps or ledger) lives.

    ``lake`` is a local path or a bucket URL; so is the result.
    """
    if table not in STAGED:
        raise LakeError(f"{table!r} has no staging files (staged tables: {', '.join(STAGED)})")
    if not (config_hash and video_id and content_key and shard_key):
        raise LakeError(f"{table} staging files need config_hash, video_id, content_key and a shard key")
    return storage.join(os.fspath(lake), STAGING, table, f"config_hash={config_hash}", video_id,
                        f"{content_key}-{shard_key}.parquet")


def _schema_with_version(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({**(schema.metadata or {}), b"videolake.schema_version": SCHEMA_VERSION.encode()})


# delta-rs cannot write a local table whose path has one of these: it panics on ``[ ] ^ |`` (the path
# becomes the host of an object store URL; a lake moved under them is still read) and reads ``\\``
# and ``%XX`` as escapes (reading too).
_DELTA_UNWRITABLE = re.compile(r"[\[\]^|\\]|%[0-9A-Fa-f]{2}")


def check_delta_path(lake: str | os.PathLike[str]) -> None:
    """``ConfigError`` for a local lake path that Delta tables cannot be written under."""
    lake = os.fspath(lake)
    found = None if storage.is_remote(lake) else _DELTA_UNWRITABLE.search(lake)
    if found:
        raise ConfigError(f"{lake}: a lake cannot be written in a folder whose path has {found.group()!r} "
                          "(delta-rs cannot write Delta tables there); choose another folder")


def check_writable(lake: str | os.PathLike[str]) -> None:
    """Fail early, naming the lake (never a credential), when it cannot be written."""
    lake = os.fspath(lake)
    check_delta_path(lake)
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
    """Streams rows of one table into one Parquet file; the file appears only on ``close``, and only
    when rows were written (a shard's ledger row says how many rows each staged table has).

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
        self._tmp: str | None = None  # named when the first rows are written: an empty sink touches nothing
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
            self._open()
        self._writer.write_table(pa.concat_tables(self._pending), row_group_size=self.row_group_rows)
        self.rows_written += self._pending_rows
        self._pending, self._pending_rows = [], 0

    def _open(self) -> None:
        self._tmp = storage.tmp_path_for(self.path)
        for attempt in range(3):
            try:
                # Snappy (Parquet's default), not zstd: a staged file lives until its video is published,
                # and zstd's set-up was a third of a small file's write.
                self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="snappy")
                return
            except FileNotFoundError:
                # Local: another writer's clean-up removed the folder it found empty between our
                # makedirs and this open (two runs publishing one video). Make it again.
                if attempt == 2 or os.path.dirname(self._tmp) == "":
                    raise LakeError(f"cannot write {self.path}: its folder keeps disappearing") from None
                os.makedirs(os.path.dirname(self._tmp), exist_ok=True)
            except OSError as exc:
                raise LakeError(f"cannot write {self.path}: {exc}") from None

    def close(self) -> None:
        try:
            self._flush()
            if self._writer is None:  # no rows: no file (one write fewer per empty table of a shard)
                return
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
        if self._tmp is not None:
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
    """Write a small table from row dicts atomically (no rows: no file)."""
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


# --- The lake object ---------------------------------------------------------------------------

# A conflicting concurrent commit (another run or a compaction touched the same rows first)
# is retried on the new table version, this many times, with jittered backoff.
_COMMIT_ATTEMPTS = 40
_TABLE_CONFIG = {
    "delta.checkpointInterval": "100",             # readers replay at most 100 JSON commits past a checkpoint
    "delta.logRetentionDuration": "interval 30 days",
    "delta.deletedFileRetentionDuration": "interval 7 days",
}


def sql_literal(value: str) -> str:
    """A string as a SQL literal for Delta predicates."""
    return "'" + str(value).replace("'", "''") + "'"


def delta_storage_options(url: str) -> dict[str, str]:
    """delta-rs's options for ``url``, from the same settings as fsspec's.

    delta-rs reads the standard variables (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``) itself; this adds
    what ``VIDEOLAKE_STORAGE_OPTIONS`` says in fsspec's words (``key``, ``secret``, ``token``,
    ``endpoint_url``, ``client_kwargs``). Commits on S3 use conditional writes (``If-None-Match``),
    which AWS S3, MinIO, R2 and moto support; no lock table is needed.
    """
    if storage.protocol(url) not in ("s3", "s3a"):
        return {}
    given = storage.storage_options(url)
    client = given.get("client_kwargs") or {}
    endpoint = (given.get("endpoint_url") or client.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL"))
    region = client.get("region_name") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    out = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": region, "AWS_ACCESS_KEY_ID": given.get("key"),
           "AWS_SECRET_ACCESS_KEY": given.get("secret"), "AWS_SESSION_TOKEN": given.get("token")}
    if endpoint and endpoint.startswith("http://"):
        out["AWS_ALLOW_HTTP"] = "true"
    return {k: str(v) for k, v in out.items() if v}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Lake:
    """A lake opened once: its URL, its Delta tables, its staging area, its commits and its SQL.

    ``Lake.open(url)`` opens an existing lake (readers: ``query``, ``report``, ``render``,
    ``compact``) and raises ``NotALakeError`` for anything else; ``Lake.open_or_create(url)``
    (``run``) also creates an empty lake, or upgrades one of the older layout.
    ``notify`` receives the one-line messages of a writer that has to wait for another.
    """

    def __init__(self, url: str | os.PathLike[str], notify: Callable[[str], None] | None = None) -> None:
        self.url = storage.normalize(url)
        self.storage_options = delta_storage_options(self.url)
        self.notify = notify or _stderr
        self._tables: dict[str, DeltaTable] = {}

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | os.PathLike[str], notify: Callable[[str], None] | None = None) -> Lake:
        lake = cls(url, notify)
        layout = lake.layout()
        if layout == LAYOUT_VERSION:
            return lake
        if layout == 1:
            raise NotALakeError(f"{lake.url} is a lake of videolake's older layout: upgrade it with "
                                f"`videolake migrate {lake.url}` (a `videolake run` into it upgrades it too)")
        if layout is not None:
            raise NotALakeError(f"{lake.url} is a lake of a newer videolake (layout {layout}); upgrade videolake")
        raise NotALakeError(f"{lake.url} is not a videolake lake (no {MARKER}); `videolake run` creates one")

    @classmethod
    def open_or_create(cls, url: str | os.PathLike[str], notify: Callable[[str], None] | None = None) -> Lake:
        """For ``run``: the lake at ``url``, created when there is none, upgraded when it has the older layout;
        an interrupted commit of an earlier run is completed first."""
        lake = cls(url, notify)
        check_delta_path(lake.url)
        layout = lake.layout()
        if layout == 1:
            from videolake.pipeline.migrate import migrate

            report = migrate(lake)
            lake.notify(f"upgraded {lake.url} to layout {LAYOUT_VERSION}: {report.line()}")
        elif layout is None:
            lake.create()
        elif layout != LAYOUT_VERSION:
            raise NotALakeError(f"{lake.url} is a lake of a newer videolake (layout {layout}); upgrade videolake")
        lake.recover()
        return lake

    def layout(self) -> int | None:
        """2 for this layout, 1 for the Parquet-folders layout before it, ``None`` when no lake is there."""
        marker = storage.join(self.url, MARKER)
        try:
            return int(json.loads(storage.read_bytes(marker))["layout"])
        except (FileNotFoundError, NotADirectoryError):
            pass
        except (ValueError, KeyError, TypeError):
            raise LakeError(f"{marker} is damaged: it should be JSON with a layout number") from None
        except Exception as exc:  # noqa: BLE001 - a bucket that cannot be read
            raise storage.storage_error(self.url, exc, "cannot read lake") from None
        legacy = [storage.join(self.url, t) for t in ("ledger", "track_map", "_layout1")]
        return 1 if any(storage.exists(p) for p in legacy) else None

    def create(self) -> None:
        """The empty tables and then the marker (several runs may create the same lake at once)."""
        from deltalake import DeltaTable

        check_writable(self.url)
        for name in PUBLISHED:
            if self._is_table(name):
                continue
            try:
                DeltaTable.create(self.table_uri(name), schema=published_schema(name), mode="ignore",
                                  partition_by=PARTITION_BY[name] or None, configuration=_TABLE_CONFIG,
                                  storage_options=self.storage_options)
            except Exception as exc:  # noqa: BLE001 - another run created it a moment earlier
                if not self._is_table(name):
                    raise storage.storage_error(self.table_uri(name), exc, "cannot create table") from None
        storage.write_bytes(storage.join(self.url, MARKER), json.dumps({
            "layout": LAYOUT_VERSION, "format": "delta", "tables": list(PUBLISHED),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=1).encode())

    def _is_table(self, name: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.table_uri(name), storage_options=self.storage_options)

    # -- tables -------------------------------------------------------------------------------

    def table_uri(self, name: str) -> str:
        if name not in PUBLISHED:
            raise LakeError(f"unknown lake table {name!r} (tables: {', '.join(PUBLISHED)})")
        return storage.join(self.url, name)

    def staging_url(self, *parts: str) -> str:
        return storage.join(self.url, STAGING, *parts)

    def table(self, name: str) -> DeltaTable:
        """The Delta table ``name`` at its latest version (opened once, then brought up to date)."""
        from deltalake import DeltaTable

        try:
            dt = self._tables.get(name)
            if dt is None:
                dt = self._tables[name] = DeltaTable(self.table_uri(name), storage_options=self.storage_options)
            else:
                dt.update_incremental()
            return dt
        except VideolakeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise LakeError(f"cannot read table {self.table_uri(name)}: {str(exc).splitlines()[0]}") from None

    def dataset(self, name: str) -> ds.Dataset:
        """A pyarrow dataset of the table's current version (DuckDB, polars and pyarrow scan it lazily)."""
        return self.table(name).to_pyarrow_dataset()

    def read(self, name: str, columns: list[str] | None = None, filter: Any = None) -> pa.Table:  # noqa: A002
        return self.dataset(name).to_table(columns=columns, filter=filter)

    def transact(self, name: str, what: str, action: Callable[[DeltaTable], Any]) -> Any:
        """Run ``action`` (one Delta transaction) on the table's latest version.

        A conflict with a concurrent writer (another run, a compaction) is retried on the new
        version; the first retry says so in one line.
        """
        from deltalake.exceptions import CommitFailedError

        check_delta_path(self.url)
        for attempt in range(_COMMIT_ATTEMPTS):
            dt = self.table(name)
            try:
                return action(dt)
            except CommitFailedError as exc:
                if attempt == 0:
                    self.notify(f"waiting: another writer committed to {self.table_uri(name)} first; retrying {what}")
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise LakeError(f"cannot commit {what} to {self.table_uri(name)}: {str(exc).splitlines()[0]}") from None
                time.sleep(min(2.0, 0.05 * 2 ** min(attempt, 6)) * (0.5 + random.random()))
            except VideolakeError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise storage.storage_error(self.table_uri(name), exc, f"cannot commit {what} to") from None
        raise AssertionError("unreachable")

    def write(self, name: str, data: Callable[[], Any], predicate: str | None, what: str) -> None:
        """Append ``data()`` to table ``name``, or replace the rows ``predicate`` selects, in one transaction.

        Columns that ``SCHEMAS`` gained since the table was created are added (old rows read null).
        """
        from deltalake import WriterProperties, write_deltalake

        props = WriterProperties(compression="ZSTD", max_row_group_size=_ROW_GROUP_ROWS)
        self.transact(name, what, lambda dt: write_deltalake(
            dt, data(), mode="overwrite" if predicate else "append", predicate=predicate,
            partition_by=PARTITION_BY[name] or None, schema_mode="merge", writer_properties=props))

    def record_paths(self, sources: Iterable[Any]) -> None:
        """Videos found at a new path (a moved or copied archive): their ``videos`` rows get the new ``uri``.

        The rows are rewritten through ``write`` like every other change, not with a Delta MERGE:
        delta-rs's merge writes string columns as ``string_view``, and a pyarrow scan of such a file
        fails on any filter DuckDB pushes down with a bound parameter (``video_id = ?``).
        """
        import pyarrow.compute as pc

        moved = {s.video_id: s for s in sources}
        if not moved:
            return

        def updated() -> pa.Table:
            rows = self.read("videos", filter=pc.field("video_id").isin(list(moved))).to_pylist()
            for row in rows:
                source = moved[row["video_id"]]
                row.update(uri=source.uri, size_bytes=source.size_bytes, source_version=source.version)
            return self.rows("videos", rows)

        ids = ", ".join(sql_literal(v) for v in sorted(moved))
        self.write("videos", updated, f"video_id IN ({ids})", f"the new paths of {len(moved)} video(s)")

    def rows(self, name: str, rows: list[dict[str, Any]]) -> pa.Table:
        """Row dicts as a table of the Delta table's schema (missing keys are null)."""
        schema = published_schema(name)
        return pa.Table.from_pydict({f.name: _column([row.get(f.name) for row in rows], f.type) for f in schema}, schema=schema)

    # -- what the library does with a lake ------------------------------------------------------

    def commit_video(self, commit: Any) -> None:
        """Publish one finished video (a ``videolake.pipeline.commit.VideoCommit``)."""
        from videolake.pipeline.commit import commit_video

        commit_video(self, commit)

    def commit_videos(self, commits: list[Any]) -> None:
        """Publish many finished videos at once: one Delta transaction per table (``commit_videos``)."""
        from videolake.pipeline.commit import commit_videos

        commit_videos(self, commits)

    def commit_run(self, row: dict[str, Any]) -> None:
        """The run's row in ``runs`` (a rerun of the same commit replaces it)."""
        self.write("runs", lambda: self.rows("runs", [row]), f"run_id = {sql_literal(row['run_id'])}", f"run {row['run_id']}")

    def recover(self, grace_s: float | None = None) -> int:
        """Complete video commits that a killed writer left half done (intents older than ``grace_s``,
        default five minutes); returns how many."""
        from videolake.pipeline.commit import RECOVER_AFTER_S, recover

        return recover(self, RECOVER_AFTER_S if grace_s is None else grace_s)

    def state(self, config_hash: str, sources: Iterable[Any] | None = None) -> Any:
        """What the lake holds for ``config_hash`` (a ``videolake.pipeline.ledger.LakeState``)."""
        from videolake.pipeline.ledger import read_lake_state

        return read_lake_state(self, config_hash, sources)

    def connect(self) -> duckdb.DuckDBPyConnection:
        from videolake.pipeline.query import connect

        return connect(self)

    def sql(self, query: str) -> pa.Table:
        from videolake.pipeline.query import run_sql

        return run_sql(self, query)
