"""Publishing a finished video: its staged shard files become rows of the lake's Delta tables.

``commit_video`` goes, for one video under one config:

1. write the commit's intent, ``_staging/commits/<config_hash>/<video_id>.json`` (the ``videos``
   row, the ``shards`` rows, the stitched track map and the shard keys);
2. ``detections`` and ``clips``: the staged rows of every shard (a shard stages no file of a table
   it has no rows of: ``staged_rows``), copied column by column as
   ``SCHEMAS`` lists them (a column a staged file lacks is null), with the stitched
   ``track_id``, the shard's own id as ``raw_track_id``, ``camera_id``, the wall-clock ``ts``
   and ``config_hash`` added; one Delta transaction per table that replaces the video's rows;
3. ``shards``: this run's rows for the video; 4. ``videos``: the video's row, last;
5. remove the video's staging files, then the intent.

Each step replaces what it writes, so doing it again changes nothing: a writer killed between
two steps leaves its intent behind: the next run over the video publishes it again, and any
writer that opens the lake (a run, ``compact``) completes intents older than five minutes
(``recover``). A failed video publishes only steps 3 and 4 and keeps its staged
shards, so ``--retry-failed`` redoes only the shards that failed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from videolake.pipeline import storage
from videolake.pipeline.errors import LakeError, StorageError
from videolake.pipeline.lake import SCHEMAS, STAGED, TIME_COLUMN, Lake, published_schema, sql_literal, table_path

__all__ = ["VideoCommit", "commit_video", "commit_videos", "recover", "publish", "is_committed", "RECOVER_AFTER_S"]

_INTENTS = "commits"
# A commit intent this old belongs to a writer that was killed (a live commit takes seconds).
RECOVER_AFTER_S = 300.0


@dataclass
class VideoCommit:
    """Everything publishing one finished video needs; saved as the commit's intent."""

    config_hash: str
    run_id: str
    video: dict[str, Any]                       # the ``videos`` row
    shards: list[dict[str, Any]] = field(default_factory=list)   # this run's ``shards`` rows
    shard_keys: list[str] = field(default_factory=list)          # staged shards to publish (none when failed)
    track_map: dict[int, int] = field(default_factory=dict)      # raw track id -> the video's track id
    written_at: float = 0.0                                      # when the intent was written (epoch seconds)
    # Rows each shard staged, by table (``detections``, ``clips``), in the order of ``shard_keys``: a shard
    # with none staged no file. A table left out, or ``None`` for a shard: its file is expected.
    staged_rows: dict[str, list[int | None]] = field(default_factory=dict)

    @property
    def video_id(self) -> str:
        return self.video["video_id"]

    @property
    def content_key(self) -> str:
        return self.video["content_key"]

    @property
    def ok(self) -> bool:
        return self.video.get("status") == "ok"

    def to_json(self) -> bytes:
        data = asdict(self)
        data["track_map"] = [[k, v] for k, v in sorted(self.track_map.items())]
        return json.dumps(data, default=_iso).encode()

    @classmethod
    def from_json(cls, blob: bytes) -> VideoCommit:
        data = json.loads(blob)
        data["track_map"] = {int(k): int(v) for k, v in data["track_map"]}
        for row in [data["video"], *data["shards"]]:
            for key in ("finished_at", "recorded_at", "committed_at"):
                if row.get(key):
                    row[key] = datetime.fromisoformat(row[key])
        return cls(**data)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a commit intent")


def _intent_url(lake: Lake, config_hash: str, video_id: str) -> str:
    return lake.staging_url(_INTENTS, config_hash, f"{video_id}.json")


def commit_video(lake: Lake, commit: VideoCommit) -> None:
    """Steps 1-5 of the module docstring."""
    intent = _intent_url(lake, commit.config_hash, commit.video_id)
    commit.written_at = time.time()
    storage.write_bytes(intent, commit.to_json())
    _apply(lake, commit)
    storage.remove(intent)


def commit_videos(lake: Lake, commits: list[VideoCommit]) -> None:
    """Publish many finished videos: each step of the module docstring for all of them at once, one
    Delta transaction per table instead of four per video (their intents are written first, one per
    video, so a killed writer's videos are still completed by ``recover``).

    Failed videos, and any batch whose transaction meets another writer's, go video by video
    (``commit_video``'s checks and retries).
    """
    ok = [c for c in commits if c.ok]
    for commit in commits:
        if not commit.ok:
            commit_video(lake, commit)
    if len(ok) <= 1 or len({(c.config_hash, c.run_id) for c in ok}) > 1:
        for commit in ok:
            commit_video(lake, commit)
        return
    intents = [_intent_url(lake, c.config_hash, c.video_id) for c in ok]
    for commit, intent in zip(ok, intents):
        commit.written_at = time.time()
        storage.write_bytes(intent, commit.to_json())
    config_hash, run_id = ok[0].config_hash, ok[0].run_id
    videos = f"video_id IN ({', '.join(sql_literal(c.video_id) for c in ok)})"
    what = f"{len(ok)} videos"
    try:
        for table in ("detections", "clips"):
            lake.write(table, lambda t=table: _published_many(lake, ok, t), f"config_hash = {sql_literal(config_hash)} AND {videos}", what)
        lake.write("shards", lambda: lake.rows("shards", [row for c in ok for row in c.shards]),
                   f"run_id = {sql_literal(run_id)} AND {videos}", what)
        lake.write("videos", lambda: lake.rows("videos", [c.video for c in ok]), f"config_hash = {sql_literal(config_hash)} AND {videos}", what)
    except Exception as exc:  # noqa: BLE001 - another writer of one of these videos: each on its own
        lake.notify(f"publishing {what} at once failed ({type(exc).__name__}); publishing them one by one")
        for commit, intent in zip(ok, intents):
            _apply(lake, commit)
            storage.remove(intent)
        return
    for commit, intent in zip(ok, intents):
        _remove_staging(lake, commit)
        storage.remove(intent)


def _published_many(lake: Lake, commits: list[VideoCommit], table: str) -> pa.RecordBatchReader:
    """The staged rows of ``table`` of every video in ``commits``, streamed."""
    readers = [_published(lake, c, table) for c in commits]  # each checks its staged files exist
    return pa.RecordBatchReader.from_batches(published_schema(table), (b for r in readers for b in r))


_APPLY_ATTEMPTS = 3


def _video_predicate(commit: VideoCommit) -> str:
    return f"config_hash = {sql_literal(commit.config_hash)} AND video_id = {sql_literal(commit.video_id)}"


def _apply(lake: Lake, commit: VideoCommit) -> None:
    what = f"video {commit.video_id}"
    if not commit.ok and is_committed(lake, commit.config_hash, commit.video_id):
        # Another run published this content under this config meanwhile: a failure here (a worker
        # lost, a staged file removed under it) never replaces those rows.
        lake.write("shards", lambda: lake.rows("shards", commit.shards),
                   f"run_id = {sql_literal(commit.run_id)} AND video_id = {sql_literal(commit.video_id)}", what)
        lake.notify(f"video {commit.video_id} was published by another run meanwhile; keeping its rows")
        return
    for attempt in range(_APPLY_ATTEMPTS):
        try:
            if commit.ok:
                for table in ("detections", "clips"):
                    lake.write(table, lambda t=table: _published(lake, commit, t), _video_predicate(commit), what)
            lake.write("shards", lambda: lake.rows("shards", commit.shards),
                       f"run_id = {sql_literal(commit.run_id)} AND video_id = {sql_literal(commit.video_id)}", what)
            lake.write("videos", lambda: lake.rows("videos", [commit.video]), _video_predicate(commit), what)
            break
        except Exception:
            # Another run that analysed the same video at the same time may have published it and
            # removed the staged files this commit was reading: its rows are the same rows.
            if commit.ok and is_committed(lake, commit.config_hash, commit.video_id):
                lake.notify(f"video {commit.video_id} was published by another run meanwhile; keeping its rows")
                return
            # Or it is writing the same staged files (same content, same settings) under this read:
            # every write above replaces the video's rows, so reading them again is safe.
            if not commit.ok or attempt == _APPLY_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    if commit.ok:
        _remove_staging(lake, commit)


def is_committed(lake: Lake, config_hash: str, video_id: str, run_id: str | None = None) -> bool:
    """Whether ``videos`` holds an ``ok`` row for the video under ``config_hash`` (from ``run_id`` when given)."""
    rows = lake.read("videos", columns=["status", "run_id"],
                     filter=(ds.field("config_hash") == config_hash) & (ds.field("video_id") == video_id)).to_pylist()
    return any(r["status"] == "ok" and (run_id is None or r["run_id"] == run_id) for r in rows)


def _published(lake: Lake, commit: VideoCommit, table: str) -> pa.RecordBatchReader:
    """The video's staged rows of ``table``, shard by shard, as the Delta table's rows (streamed). A
    staged file the commit counts rows in and that is missing was removed by another writer: ``LakeError``."""
    rows = commit.staged_rows.get(table) or [None] * len(commit.shard_keys)
    urls = [table_path(lake.url, table, config_hash=commit.config_hash, video_id=commit.video_id,
                       content_key=commit.content_key, shard_key=key) for key, n in zip(commit.shard_keys, rows) if n != 0]
    missing = [u for u in urls if not storage.exists(u)]
    if missing:
        raise LakeError(f"staged file {missing[0]} is missing")

    def batches():  # noqa: ANN202
        for url in urls:
            staged = storage.read_parquet(url)
            if staged is None:
                raise LakeError(f"staged file {url} is missing")
            yield from publish(table, staged, commit.video_id, commit.content_key, commit.config_hash,
                               commit.video.get("camera_id"), commit.video.get("recorded_at"), commit.track_map).to_batches()

    return pa.RecordBatchReader.from_batches(published_schema(table), batches())


def publish(table: str, staged: pa.Table, video_id: str, content_key: str, config_hash: str, camera_id: str | None,
            recorded_at: datetime | None, track_map: dict[int, int]) -> pa.Table:
    """One video's staged rows of ``detections`` or ``clips`` as published rows: every column of
    ``SCHEMAS[table]`` (null where the staged file lacks it), the video's ids, track ids stitched,
    ``camera_id``, ``ts`` and ``config_hash`` added."""
    n = staged.num_rows
    columns: dict[str, Any] = {}
    for f in SCHEMAS[table]:
        columns[f.name] = staged[f.name].cast(f.type) if f.name in staged.column_names else pa.nulls(n, f.type)
    columns["video_id"] = pa.array([video_id] * n, pa.string())
    columns["content_key"] = pa.array([content_key] * n, pa.string())
    raw = columns["track_id"]
    columns["track_id"] = _stitched(raw, track_map)
    columns["raw_track_id"] = raw
    columns["camera_id"] = pa.array([camera_id] * n, pa.string())
    columns["ts"] = wall_clock(columns[TIME_COLUMN[table]], recorded_at)
    columns["config_hash"] = pa.array([config_hash] * n, pa.string())
    return pa.table(columns, schema=published_schema(table))


def _stitched(raw: pa.ChunkedArray | pa.Array, track_map: dict[int, int]) -> pa.Array:
    if not track_map:
        return raw
    keys = sorted(track_map)
    index = pc.index_in(raw, value_set=pa.array(keys, pa.int64()))
    mapped = pc.take(pa.array([track_map[k] for k in keys], pa.int64()), index)
    return pc.coalesce(mapped, raw)


def wall_clock(t_s: pa.ChunkedArray | pa.Array, recorded_at: datetime | None) -> pa.Array:
    """``recorded_at + t_s`` as UTC timestamps (microseconds); null when the start time is unknown."""
    kind = pa.timestamp("us", tz="UTC")
    if recorded_at is None:
        return pa.nulls(len(t_s), kind)
    base = int(recorded_at.timestamp() * 1_000_000)
    seconds = t_s.to_numpy(zero_copy_only=False) if isinstance(t_s, pa.ChunkedArray) else np.asarray(t_s)
    return pa.array(base + np.round(seconds.astype(np.float64) * 1e6).astype(np.int64), type=pa.int64()).cast(kind)


def _remove_staging(lake: Lake, commit: VideoCommit) -> None:
    """The video's staged files, file by file: a worker of another run may be writing into the same folder."""
    for table in STAGED:  # the ledger last: a shard counts as done while its ledger file exists
        storage.remove_files([table_path(lake.url, table, config_hash=commit.config_hash, video_id=commit.video_id,
                                         content_key=commit.content_key, shard_key=key) for key in commit.shard_keys])


def recover(lake: Lake, grace_s: float = RECOVER_AFTER_S) -> int:
    """Complete the commits whose intents a killed writer left; returns how many were completed.

    Intents younger than ``grace_s`` belong to writers that may still be at work and are left
    alone. One that cannot be completed now (its bucket failing, a live writer replacing its
    staged files) stays for the next writer: recovery never stops the writer that attempts it.
    """
    done = 0
    for f in storage.list_files(lake.staging_url(_INTENTS)):
        if not f.url.endswith(".json") or f.url.rsplit("/", 1)[-1].startswith("_tmp-"):
            continue
        try:
            commit = VideoCommit.from_json(storage.read_bytes(f.url))
        except FileNotFoundError:
            continue  # its writer finished meanwhile
        except (ValueError, KeyError, TypeError):
            lake.notify(f"ignoring a damaged commit intent: {f.url}")
            continue
        if time.time() - commit.written_at < grace_s:
            continue
        try:
            if commit.ok and is_committed(lake, commit.config_hash, commit.video_id, commit.run_id):
                _remove_staging(lake, commit)  # it was published; only the clean-up was cut short
            else:
                _apply(lake, commit)
        except StorageError as exc:
            lake.notify(f"cannot complete the interrupted commit of video {commit.video_id} now: {exc}")
            continue
        except LakeError as exc:  # its staged files are gone: the video is analysed again by the next run
            lake.notify(f"cannot complete the interrupted commit of video {commit.video_id}: {exc}")
        storage.remove(f.url)
        done += 1
    return done
