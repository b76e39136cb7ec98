"""What the lake already holds: committed shards, finished videos, quarantined failures."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.dataset as ds

from pipeline.sources import VideoSource

__all__ = ["LakeState", "read_lake_state", "QUARANTINE_KINDS"]

# Failures that would repeat on the same bytes: skipped until the content changes.
QUARANTINE_KINDS = ("source", "decode")


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


def read_lake_state(lake: str | os.PathLike[str], config_hash: str) -> LakeState:
    """Committed shards come from ledger file names (a listing, no reads); videos from their rows."""
    root = Path(lake)
    state = LakeState()
    ledger = root / "ledger" / f"config_hash={config_hash}"
    if ledger.is_dir():
        for path in ledger.glob("*/*.parquet"):
            content_key, _, shard_key = path.stem.partition("-")
            state.committed.add((path.parent.name, content_key, shard_key))
    videos = root / "videos"
    if videos.is_dir() and any(videos.rglob("*.parquet")):
        table = ds.dataset(videos, format="parquet", partitioning="hive").to_table(
            columns=["video_id", "content_key", "status", "error", "error_kind", "config_hash"])
        for row in table.to_pylist():
            key = (row["video_id"], row["content_key"])
            if row["status"] == "ok" and row["config_hash"] == config_hash:
                state.finished_ok.add(key)
            elif row["status"] == "failed" and row["error_kind"] in QUARANTINE_KINDS:
                state.quarantined[key] = row["error"] or "failed"
    for key in state.finished_ok:  # a later success of the same content lifts a quarantine
        state.quarantined.pop(key, None)
    return state
