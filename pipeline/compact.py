"""Compaction: rewrite many small Parquet files into few large ones, atomically for readers.

Only the per-shard ``detections`` and ``clips`` files of finished videos are compacted (a
video still being analysed keeps its per-shard files, which the stitch step reads). One
compaction of a config partition goes:

1. write the merged rows to a temporary local file (row groups of up to 128k rows);
2. write a manifest ``_compactions/<id>.json`` naming the output and every input;
3. move the file to ``compact-<id>.parquet`` (a rename on disk, one PUT in a bucket);
4. delete the inputs, then the manifest.

Readers (``lake_files``) skip the inputs of any manifest whose output exists, so at every
moment each row is read exactly once; an interrupted compaction is finished (or undone) by
the next one. Works the same on a local lake and on a bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from videolake.pipeline import storage
from videolake.pipeline.lake import SCHEMAS
from videolake.pipeline.ledger import finished_videos

__all__ = ["CompactionReport", "compact", "lake_files", "small_file_count"]

_TABLES = ("detections", "clips")
_ROW_GROUP_ROWS = 128 * 1024
_MANIFESTS = "_compactions"


@dataclass
class CompactionReport:
    files_before: int = 0
    files_after: int = 0
    rows: int = 0


def _manifests(lake: str) -> list[tuple[str, dict]]:
    out = []
    for f in storage.list_files(storage.join(lake, _MANIFESTS)):
        if not f.url.endswith(".json") or f.url.rsplit("/", 1)[-1].startswith("_tmp-"):
            continue
        try:
            out.append((f.url, json.loads(storage.read_bytes(f.url))))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def _data_files(lake: str, table: str) -> list[storage.RemoteFile]:
    return [f for f in storage.list_files(storage.join(lake, table))
            if f.url.endswith(".parquet") and not f.url.rsplit("/", 1)[-1].startswith("_tmp-")]


def _relative(lake: str, url: str) -> str:
    return url[len(lake.rstrip("/")) + 1:]


def _superseded(lake: str) -> set[str]:
    out: set[str] = set()
    for _, manifest in _manifests(lake):
        if storage.exists(storage.join(lake, manifest["output"])):
            out.update(manifest["inputs"])
    return out


def lake_files(lake: str | os.PathLike[str], table: str) -> list[str]:
    """The table's data files as readers must see them: superseded compaction inputs left out."""
    lake = storage.normalize(lake)
    superseded = _superseded(lake)
    return [f.url for f in _data_files(lake, table) if _relative(lake, f.url) not in superseded]


def small_file_count(lake: str | os.PathLike[str], small_bytes: int = 8 << 20) -> int:
    lake = storage.normalize(lake)
    superseded = _superseded(lake)
    return sum(1 for t in _TABLES for f in _data_files(lake, t)
               if _relative(lake, f.url) not in superseded
               and not f.url.rsplit("/", 1)[-1].startswith("compact-") and f.size_bytes < small_bytes)


def _finish_interrupted(lake: str) -> None:
    for url, manifest in _manifests(lake):
        if storage.exists(storage.join(lake, manifest["output"])):
            for name in manifest["inputs"]:
                storage.remove(storage.join(lake, name))
        storage.remove(url)


def compact(lake: str | os.PathLike[str], min_files: int = 2) -> CompactionReport:
    """Merge the per-shard files of finished videos, per table and config; query results do not change."""
    lake = storage.normalize(lake)
    report = CompactionReport()
    _finish_interrupted(lake)
    for table in _TABLES:
        partitions: dict[str, list[str]] = {}
        for f in _data_files(lake, table):
            partition = _relative(lake, f.url).split("/")[1]
            if partition.startswith("config_hash="):
                partitions.setdefault(partition, []).append(f.url)
        for partition, urls in sorted(partitions.items()):
            done = finished_videos(lake, partition.split("=", 1)[1])
            existing = sorted(u for u in urls if u.rsplit("/", 1)[-1].startswith("compact-"))
            inputs = sorted(u for u in urls if u not in existing
                            and (u.rsplit("/", 2)[-2], u.rsplit("/", 1)[-1].split("-", 1)[0]) in done)
            report.files_before += len(inputs) + len(existing)
            if len(inputs) + len(existing) < min_files or not inputs:
                report.files_after += len(inputs) + len(existing)
                continue
            report.rows += _merge(lake, table, storage.join(lake, table, partition), existing + inputs)
            report.files_after += 1
    return report


def _merge(lake: str, table: str, partition: str, sources: list[str]) -> int:
    """Steps 1–4 of the module docstring for one partition; returns the rows written."""
    digest = hashlib.sha256("\n".join(_relative(lake, u) for u in sources).encode()).hexdigest()[:16]
    output = storage.join(partition, f"compact-{digest}.parquet")
    first = storage.read_parquet(sources[0])
    schema = SCHEMAS[table].with_metadata(first.schema.metadata)
    rows = 0
    with storage.local_tmp(output) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            pending: list[pa.Table] = []
            pending_rows = 0
            for url in sources:
                part = storage.read_parquet(url).select(schema.names).cast(schema)
                pending.append(part)
                pending_rows += part.num_rows
                if pending_rows >= _ROW_GROUP_ROWS:
                    writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
                    rows += pending_rows
                    pending, pending_rows = [], 0
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
                rows += pending_rows
        manifest = storage.join(lake, _MANIFESTS, f"{digest}.json")
        storage.write_bytes(manifest, json.dumps({"output": _relative(lake, output),
                                                  "inputs": [_relative(lake, u) for u in sources]}).encode())
        storage.put_file(tmp, output)
    for url in sources:
        if url != output:
            storage.remove(url)
    storage.remove(manifest)
    if not storage.is_remote(lake):
        for folder in {os.path.dirname(u) for u in sources}:
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
    return rows
