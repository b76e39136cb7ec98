"""What the lake already holds: committed shards, finished videos, quarantined failures, known sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Collection, Iterable

import pyarrow as pa
import pyarrow.dataset as ds

from videolake.pipeline import storage
from videolake.pipeline.sources import Identities, VideoSource

if TYPE_CHECKING:
    from videolake.pipeline.lake import Lake

__all__ = ["LakeState", "read_lake_state", "known_sources", "moved", "QUARANTINE_KINDS"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
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


def read_lake_state(lake: Lake, config_hash: str, sources: Iterable[VideoSource] | None = None) -> LakeState:
    """Finished and failed videos from the ``videos`` table; committed shards from the names of
    the staged ledger files (one listing). With ``sources``, only the rows of their contents are read
    (a run over today's folder does not hold the lake's whole history); ``None``: all."""
    state = LakeState()
    for f in storage.list_files(lake.staging_url("ledger", f"config_hash={config_hash}")):
        parts = f.url.rsplit("/", 2)
        if len(parts) == 3 and parts[2].endswith(".parquet") and not parts[2].startswith("_tmp-"):
            content_key, _, shard_key = parts[2][: -len(".parquet")].partition("-")
            state.committed.add((parts[1], content_key, shard_key))
    wanted = None if sources is None else {(s.video_id, s.content_key) for s in sources}
    of_sources = None if wanted is None else ds.field("content_key").isin(pa.array(sorted({k for _, k in wanted}), pa.string()))
    videos = lake.read("videos", columns=["video_id", "content_key", "status", "error", "error_kind", "config_hash"],
                       filter=of_sources).to_pylist()
    for row in videos:
        if row["status"] == "ok" and row["config_hash"] == config_hash:
            state.finished_ok.add((row["video_id"], row["content_key"]))
    for row in videos:  # a failure under any config, unless this config finished the same content
        key = (row["video_id"], row["content_key"])
        if row["status"] == "failed" and row["error_kind"] in QUARANTINE_KINDS and key not in state.finished_ok \
                and (wanted is None or key in wanted):
            state.quarantined[key] = row["error"] or "failed"
    return state


def known_sources(lake: Lake, uris: Collection[str] | None = None, content_keys: Collection[str] | None = None) -> Identities:
    """The sources the lake has seen, so a listing needs to read only new or changed files: all of them,
    or with ``uris`` and ``content_keys`` the rows at those paths and of those contents (a
    ``sources.KnownLookup``: ``discover(known=partial(known_sources, lake))``)."""
    out = Identities()
    wanted = None
    if uris is not None or content_keys is not None:
        parts = [ds.field(column).isin(pa.array(sorted(values), pa.string()))
                 for column, values in (("uri", uris), ("content_key", content_keys)) if values]
        if not parts:
            return out
        wanted = parts[0] if len(parts) == 1 else parts[0] | parts[1]
    seen = ds.field("size_bytes").is_valid()
    rows = lake.read("videos", columns=["uri", "size_bytes", "source_version", "content_key", "video_id", "finished_at"],
                     filter=seen if wanted is None else seen & wanted)
    for row in sorted(rows.to_pylist(), key=lambda r: r["finished_at"] or _EPOCH):  # the latest path wins
        out.by_version[(row["uri"], int(row["size_bytes"]), row["source_version"] or "")] = row["content_key"]
        out.by_content[row["content_key"]] = (row["video_id"], row["uri"])
    return out


def moved(sources: Iterable[VideoSource], known: Identities) -> list[VideoSource]:
    """Sources whose video the lake recorded at another path (a moved or copied archive)."""
    return [s for s in sources if s.content_key in known.by_content and known.by_content[s.content_key][1] != s.uri]
