"""What the lake already holds: committed shards, finished videos, quarantined failures."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable

import pyarrow.parquet as pq

from videolake.pipeline import storage
from videolake.pipeline.sources import VideoSource

__all__ = ["LakeState", "read_lake_state", "finished_videos", "QUARANTINE_KINDS"]

# Failures that would repeat on the same bytes: skipped until the content changes. A video is
# recorded as timed out only after two timeouts in a row, and as killing its worker only after
# every retry did (flows.analyze), so one stuck run never quarantines it.
QUARANTINE_KINDS = ("source", "decode", "timeout", "worker")


@dataclass
class LakeState:
    committed: set[tuple[str, str, str]] = field(default_factory=set)   # (video_id, content_key, shard_key)
    finished_ok: set[tuple[str, str]] = field(default_factory=set)       # (video_id, content_key) for this config
    quarantined: dict[tuple[str, str], str] = field(default_factory=dict)  # (video_id, content_key) → error

    def is_done(self, source: VideoSource) -> bool:
        return (source.video_id, source.content_key) in self.finished_ok

    def quarantine_reason(self, source: VideoSource) -> str | None:
        return self.quarantined.get((source.video_id, source.content_key))

    def shard_committed(self, source: VideoSource, shard_key: str) -> bool:
        return (source.video_id, source.content_key, shard_key) in self.committed


def read_lake_state(lake: str | os.PathLike[str], config_hash: str, sources: Iterable[VideoSource] | None = None) -> LakeState:
    """What the lake holds, from listings alone: no file is read except failed videos' rows.

    Committed shards come from ledger file names; a finished video is one with a ``videos``
    file and a ``track_map`` file (written only on success, before the row). Quarantine
    reasons are read from the rows of failed videos among ``sources`` (all when ``None``).
    """
    lake = os.fspath(lake)
    state = LakeState()
    with ThreadPoolExecutor(3) as pool:  # three independent listings, each one request per 1,000 objects
        ledger, maps, videos = pool.map(lambda args: _listing(lake, *args), [("ledger", config_hash), ("track_map",), ("videos",)])
    for entry in ledger:
        content_key, _, shard_key = entry.name.partition("-")
        state.committed.add((entry.video_id, content_key, shard_key))
    finished = {(e.config_hash, e.video_id, e.name) for e in maps}
    wanted = None if sources is None else {(s.video_id, s.content_key) for s in sources}
    failed = []
    for entry in videos:
        key = (entry.video_id, entry.name)
        if (entry.config_hash, entry.video_id, entry.name) in finished:
            if entry.config_hash == config_hash:
                state.finished_ok.add(key)
        elif wanted is None or key in wanted:
            failed.append(entry.url)
    if failed:
        fs = storage.arrow_fs(lake)[0]
        paths = [storage.arrow_fs(url)[1] for url in failed]
        rows = pq.ParquetDataset(paths, filesystem=fs).read(
            columns=["video_id", "content_key", "status", "error", "error_kind"]).to_pylist()
        for row in rows:
            if row["status"] == "failed" and row["error_kind"] in QUARANTINE_KINDS:
                state.quarantined[(row["video_id"], row["content_key"])] = row["error"] or "failed"
    for key in state.finished_ok:  # a later success of the same content lifts a quarantine
        state.quarantined.pop(key, None)
    return state


def finished_videos(lake: str | os.PathLike[str], config_hash: str) -> set[tuple[str, str]]:
    """(video_id, content_key) of the videos that finished ok under ``config_hash``, from listings."""
    lake = os.fspath(lake)
    maps = {(e.video_id, e.name) for e in _listing(lake, "track_map", config_hash)}
    return {(e.video_id, e.name) for e in _listing(lake, "videos", config_hash) if (e.video_id, e.name) in maps}


@dataclass(frozen=True)
class _Entry:
    url: str
    config_hash: str
    video_id: str
    name: str  # the file name without ``.parquet``


def _listing(lake: str, table: str, config_hash: str | None = None) -> list[_Entry]:
    """``<table>/config_hash=<h>/<video_id>/<name>.parquet`` files, from one recursive listing."""
    root = storage.join(lake, table, f"config_hash={config_hash}") if config_hash else storage.join(lake, table)
    out = []
    for f in storage.list_files(root):
        parts = f.url.rsplit("/", 3)
        if len(parts) < 4 or not parts[3].endswith(".parquet") or parts[3].startswith("_tmp-"):
            continue
        partition, video_id, name = parts[1], parts[2], parts[3][: -len(".parquet")]
        if partition.startswith("config_hash="):
            out.append(_Entry(f.url, partition.split("=", 1)[1], video_id, name))
    return out
