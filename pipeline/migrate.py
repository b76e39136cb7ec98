"""Upgrading a lake of layout 1 (videolake's Parquet folders) to layout 2 (Delta tables).

Layout 1 kept one Parquet file per shard and table under ``LAKE/<table>/config_hash=<h>/<video_id>/``,
``compact-*.parquet`` files with ``_compactions/*.json`` manifests, a ``track_map`` table of
stitched ids, and named videos by their path. ``migrate``:

1. moves the layout-1 folders under ``LAKE/_layout1/`` (renames on disk, copies on a bucket);
   nothing is deleted, and ``_layout1`` can be removed by hand once the upgrade is checked;
2. reads them by layout 1's rules: a shard counts once its ledger file exists; the inputs of a
   compaction whose output exists are skipped (the manifests only ever hide files, they never
   name one to touch); a video is finished when its ``videos`` and ``track_map`` files exist;
3. gives each video its content identity: when the file at its ``uri`` is still the one that was
   analysed (the layout-1 key of its size and mtime or ETag matches), its ``content_key`` becomes
   the fingerprint of its content, so a later run finds it done; otherwise the old key stays.
   Older content versions of one path get their own id, ``<video_id>~<8 hex>``;
4. writes every table in one transaction each (stitched ids applied, ``camera_id`` from the path,
   ``recorded_at`` from the file name when it says), then the lake's marker.

Every row of every config and content version is kept. Videos that a killed run left
unfinished (shards committed, no ``videos`` row) cannot be tied to a file (layout 1 named them by
a hash of their path): their files stay in ``_layout1`` and the next run analyses them again.
Running ``migrate`` again after an interruption starts over from ``_layout1``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from videolake.pipeline import storage
from videolake.pipeline.commit import publish
from videolake.pipeline.config import RunConfig
from videolake.pipeline.lake import (
    _TABLE_CONFIG, MARKER, PARTITION_BY, PUBLISHED, SCHEMAS, Lake, published_schema,
)
from videolake.pipeline.sources import camera_id_for, content_key_for, fingerprint, recorded_at_for

__all__ = ["MigrationReport", "migrate", "LEGACY"]

LEGACY = "_layout1"
_LEGACY_TABLES = ("detections", "clips", "overlaps", "ledger", "videos", "track_map", "shards", "runs", "_compactions")


@dataclass
class MigrationReport:
    videos: int = 0
    detections: int = 0
    clips: int = 0
    runs: int = 0
    shards: int = 0
    identified: int = 0   # videos whose file was found unchanged and fingerprinted
    unfinished: int = 0   # videos a killed run left unfinished: analysed again by the next run

    def line(self) -> str:
        return (f"{self.videos} video row(s) ({self.identified} identified by content), {self.detections} detections, "
                f"{self.clips} clips, {self.runs} runs, {self.shards} shard rows; {self.unfinished} unfinished video(s) "
                f"will be analysed again; the old files are in {LEGACY}/")


def migrate(lake: Lake) -> MigrationReport:
    """Steps 1-4 of the module docstring."""
    _move_legacy(lake)
    old = _Legacy(storage.join(lake.url, LEGACY))
    report = MigrationReport()
    videos = old.videos()
    ids = _identities(videos, report)
    report.unfinished = len(set(old.ledger) - {(r["config_hash"], r["video_id"], r["content_key"]) for r in videos})
    finished = {(r["config_hash"], r["video_id"], r["content_key"]) for r in videos
                if r["status"] == "ok" and (r["config_hash"], r["video_id"], r["content_key"]) in old.track_maps}
    time_pattern = RunConfig().time_pattern
    rows = []
    for r in videos:
        video_id, content_key, size, version = ids[(r["video_id"], r["content_key"])]
        recorded_at, recorded_from = recorded_at_for(r["uri"] or "", None, time_pattern)
        rows.append({**r, "video_id": video_id, "content_key": content_key, "size_bytes": size, "source_version": version,
                     "camera_id": camera_id_for(r["uri"]) if r["uri"] else None, "recorded_at": recorded_at,
                     "recorded_at_source": recorded_from})
    new_rows = {(r["config_hash"], *old_key): r for r, old_key in zip(rows, [(v["video_id"], v["content_key"]) for v in videos])}
    runs = old.rows("runs")
    config_of_run = {r["run_id"]: r["config_hash"] for r in runs}
    shards = [{**r, **dict(zip(("video_id", "content_key"), ids.get((r["video_id"], r["content_key"]), (r["video_id"], r["content_key"]))[:2])),
               "config_hash": config_of_run.get(r["run_id"])} for r in old.rows("shards")]
    counts: dict[str, int] = defaultdict(int)

    def published(table: str) -> Iterator[pa.RecordBatch]:
        for url, config_hash in old.data_files(table):
            staged = storage.read_parquet(url)
            for (video_id, content_key) in _groups(staged):
                key = (config_hash, video_id, content_key)
                if key not in finished:
                    continue
                part = staged.filter(pc.and_(pc.equal(staged["video_id"], video_id), pc.equal(staged["content_key"], content_key)))
                part = part.filter(pc.is_in(part["shard_index"], value_set=pa.array(sorted(old.committed_shards(key)), pa.int32())))
                row = new_rows[key]
                out = publish(table, part, row["video_id"], row["content_key"], config_hash, row["camera_id"],
                              row["recorded_at"], old.track_maps[key])
                counts[table] += out.num_rows
                yield from out.to_batches()

    data = {
        "videos": lambda: lake.rows("videos", rows),
        "runs": lambda: lake.rows("runs", runs),
        "shards": lambda: lake.rows("shards", shards),
        "detections": lambda: pa.RecordBatchReader.from_batches(published_schema("detections"), published("detections")),
        "clips": lambda: pa.RecordBatchReader.from_batches(published_schema("clips"), published("clips")),
    }
    from deltalake import write_deltalake

    for name in PUBLISHED:
        write_deltalake(lake.table_uri(name), data[name](), mode="overwrite", schema_mode="overwrite",
                        partition_by=PARTITION_BY[name] or None, configuration=_TABLE_CONFIG,
                        storage_options=lake.storage_options)
    report.videos, report.runs, report.shards = len(rows), len(runs), len(shards)
    report.detections, report.clips = counts["detections"], counts["clips"]
    lake.create()  # every table exists: writes the marker
    return report


def _groups(table: pa.Table) -> list[tuple[str, str]]:
    keys = table.select(["video_id", "content_key"]).group_by(["video_id", "content_key"]).aggregate([])
    return list(zip(keys["video_id"].to_pylist(), keys["content_key"].to_pylist()))


def _move_legacy(lake: Lake) -> None:
    target = storage.join(lake.url, LEGACY)
    for table in _LEGACY_TABLES:
        source = storage.join(lake.url, table)
        if storage.is_remote(lake.url):
            fs, path = storage.filesystem(source)
            if fs.exists(path) and not fs.exists(storage.filesystem(storage.join(source, "_delta_log"))[1]):
                fs.mv(path, storage.filesystem(storage.join(target, table))[1], recursive=True)
        elif os.path.isdir(source) and not os.path.isdir(os.path.join(source, "_delta_log")):
            os.makedirs(target, exist_ok=True)
            os.rename(source, os.path.join(target, table))
    storage.remove(storage.join(lake.url, MARKER))


def _identities(videos: list[dict[str, Any]], report: MigrationReport) -> dict[tuple[str, str], tuple[str, str, int | None, str | None]]:
    """(old video_id, old content_key) → (video_id, content_key, size_bytes, source_version)."""
    latest: dict[str, tuple[Any, str]] = {}
    for r in videos:
        stamp = (r["finished_at"] is not None, r["finished_at"] or 0)
        if r["video_id"] not in latest or stamp > latest[r["video_id"]][0]:
            latest[r["video_id"]] = (stamp, r["content_key"])
    out = {}
    for r in videos:
        key = (r["video_id"], r["content_key"])
        if key in out:
            continue
        video_id = r["video_id"] if latest[r["video_id"]][1] == r["content_key"] else f"{r['video_id']}~{r['content_key'][:8]}"
        found = _unchanged(r["uri"], r["content_key"])
        if found is None:
            out[key] = (video_id, r["content_key"], None, None)
        else:
            size, version = found
            out[key] = (video_id, fingerprint(r["uri"], size), size, version)
            report.identified += 1
    return out


def _unchanged(uri: str | None, content_key: str) -> tuple[int, str] | None:
    """The file's (size, version) when the file at ``uri`` is still the one layout 1 analysed."""
    if not uri:
        return None
    if not storage.is_remote(uri):
        try:
            st = os.stat(uri)
        except OSError:
            return None
        return (st.st_size, str(st.st_mtime_ns)) if content_key_for(st.st_size, st.st_mtime_ns) == content_key else None
    try:
        listed = storage.list_files(uri)
    except Exception:  # noqa: BLE001 - gone, or its bucket is
        return None
    for f in listed:
        if f.url == uri and content_key_for(f.size_bytes, f.version) == content_key:
            return f.size_bytes, f.version
    return None


class _Legacy:
    """Layout 1's files under ``root``, read by layout 1's rules."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.files = {t: [f.url for f in storage.list_files(storage.join(root, t))
                          if f.url.endswith(".parquet") and not f.url.rsplit("/", 1)[-1].startswith("_tmp-")]
                      for t in _LEGACY_TABLES if t != "_compactions"}
        hidden = self._superseded()
        self.files = {t: [u for u in urls if self._relative(u) not in hidden] for t, urls in self.files.items()}
        self.ledger: dict[tuple[str, str, str], set[int]] = defaultdict(set)
        for url, config_hash in self.data_files("ledger"):
            for r in storage.read_parquet(url, ["video_id", "content_key", "shard_index"]).to_pylist():
                self.ledger[(config_hash, r["video_id"], r["content_key"])].add(r["shard_index"])
        self.track_maps: dict[tuple[str, str, str], dict[int, int]] = {}
        for url, config_hash in self.data_files("track_map"):
            video_id, name = url.rsplit("/", 2)[-2:]
            mapping = self.track_maps.setdefault((config_hash, video_id, name[: -len(".parquet")]), {})
            for r in storage.read_parquet(url, ["raw_track_id", "track_id"]).to_pylist():
                mapping[int(r["raw_track_id"])] = int(r["track_id"])

    def _relative(self, url: str) -> str:
        return url[len(self.root.rstrip("/")) + 1:]

    def _superseded(self) -> set[str]:
        """Inputs of compactions whose output exists (the only use of a manifest: hiding files)."""
        out: set[str] = set()
        present = {self._relative(u) for urls in self.files.values() for u in urls}
        for f in storage.list_files(storage.join(self.root, "_compactions")):
            try:
                manifest = json.loads(storage.read_bytes(f.url))
            except (OSError, ValueError):
                continue
            if isinstance(manifest, dict) and manifest.get("output") in present:
                out.update(str(p) for p in manifest.get("inputs", []) if p != manifest.get("output"))
        return out

    def data_files(self, table: str) -> list[tuple[str, str]]:
        """(url, config_hash) of each live file of a partitioned table."""
        out = []
        for url in self.files.get(table, []):
            partition = self._relative(url).split("/")[1]
            if partition.startswith("config_hash="):
                out.append((url, partition.split("=", 1)[1]))
        return out

    def committed_shards(self, key: tuple[str, str, str]) -> set[int]:
        return self.ledger.get(key, set())

    def videos(self) -> list[dict[str, Any]]:
        rows = []
        for url, config_hash in self.data_files("videos"):
            rows += [{**r, "config_hash": config_hash} for r in storage.read_parquet(url).to_pylist()]
        return rows

    def rows(self, table: str) -> list[dict[str, Any]]:
        names = set(SCHEMAS[table].names)
        return [{k: v for k, v in r.items() if k in names} for url in self.files.get(table, [])
                for r in storage.read_parquet(url).to_pylist()]
