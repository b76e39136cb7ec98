"""Compaction: rewrite many small Parquet files into few large ones, atomically for readers.

Only the per-shard ``detections`` and ``clips`` files of finished videos are compacted (a
video still being analysed keeps its per-shard files, which the stitch step reads). One
compaction of a config partition goes:

1. write the merged rows to a temporary file (row groups of up to 128k rows);
2. write a manifest ``_compactions/<id>.json`` naming the output and every input;
3. rename the temporary file to ``compact-<id>.parquet``;
4. delete the inputs, then the manifest.

Readers (``lake_files``) skip the inputs of any manifest whose output exists, so at every
moment each row is read exactly once; an interrupted compaction is finished (or undone) by
the next one.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lake import SCHEMAS

__all__ = ["CompactionReport", "compact", "lake_files", "small_file_count"]

_TABLES = ("detections", "clips")
_ROW_GROUP_ROWS = 128 * 1024
_MANIFESTS = "_compactions"


@dataclass
class CompactionReport:
    files_before: int = 0
    files_after: int = 0
    rows: int = 0


def _manifests(lake: Path) -> list[tuple[Path, dict]]:
    folder = lake / _MANIFESTS
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def lake_files(lake: str | os.PathLike[str], table: str) -> list[Path]:
    """The table's data files as readers must see them: superseded compaction inputs left out."""
    root = Path(lake)
    files = sorted((root / table).rglob("*.parquet")) if (root / table).is_dir() else []
    superseded: set[str] = set()
    for _, manifest in _manifests(root):
        if (root / manifest["output"]).is_file():
            superseded.update(manifest["inputs"])
    return [f for f in files if str(f.relative_to(root)) not in superseded]


def small_file_count(lake: str | os.PathLike[str], small_bytes: int = 8 << 20) -> int:
    return sum(1 for t in _TABLES for f in lake_files(lake, t) if not f.name.startswith("compact-") and f.stat().st_size < small_bytes)


def _finish_interrupted(root: Path) -> None:
    for path, manifest in _manifests(root):
        if (root / manifest["output"]).is_file():
            for name in manifest["inputs"]:
                (root / name).unlink(missing_ok=True)
        path.unlink(missing_ok=True)


def _finished_videos(root: Path, config_hash: str) -> set[tuple[str, str]]:
    folder = root / "videos" / f"config_hash={config_hash}"
    done = set()
    for path in folder.glob("*/*.parquet") if folder.is_dir() else []:
        row = pq.read_table(path, columns=["status"]).to_pylist()
        if row and row[0]["status"] == "ok":
            done.add((path.parent.name, path.stem))
    return done


def compact(lake: str | os.PathLike[str], min_files: int = 2) -> CompactionReport:
    """Merge the per-shard files of finished videos, per table and config; query results do not change."""
    root = Path(lake)
    report = CompactionReport()
    _finish_interrupted(root)
    for table in _TABLES:
        for partition in sorted((root / table).glob("config_hash=*")) if (root / table).is_dir() else []:
            config_hash = partition.name.split("=", 1)[1]
            done = _finished_videos(root, config_hash)
            inputs = sorted(
                p for p in partition.glob("*/*.parquet")
                if (p.parent.name, p.stem.split("-", 1)[0]) in done
            )
            existing = sorted(partition.glob("compact-*.parquet"))
            report.files_before += len(inputs) + len(existing)
            if len(inputs) + len(existing) < min_files or not inputs:
                report.files_after += len(inputs) + len(existing)
                continue
            sources = existing + inputs
            digest = hashlib.sha256("\n".join(str(p.relative_to(root)) for p in sources).encode()).hexdigest()[:16]
            output = partition / f"compact-{digest}.parquet"
            tmp = partition / f"_tmp-{uuid.uuid4().hex}.inprogress"
            schema = SCHEMAS[table].with_metadata(pq.read_schema(inputs[0]).metadata)
            rows = 0
            with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                pending: list[pa.Table] = []
                pending_rows = 0
                for path in sources:
                    part = pq.read_table(path).select(schema.names).cast(schema)
                    pending.append(part)
                    pending_rows += part.num_rows
                    if pending_rows >= _ROW_GROUP_ROWS:
                        writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
                        rows += pending_rows
                        pending, pending_rows = [], 0
                if pending:
                    writer.write_table(pa.concat_tables(pending), row_group_size=_ROW_GROUP_ROWS)
                    rows += pending_rows
            manifest_dir = root / _MANIFESTS
            manifest_dir.mkdir(exist_ok=True)
            manifest = manifest_dir / f"{digest}.json"
            manifest_tmp = manifest_dir / f"_tmp-{uuid.uuid4().hex}"
            manifest_tmp.write_text(json.dumps({"output": str(output.relative_to(root)),
                                                "inputs": [str(p.relative_to(root)) for p in sources]}))
            os.replace(manifest_tmp, manifest)
            os.replace(tmp, output)
            for path in sources:
                if path != output:
                    path.unlink(missing_ok=True)
            manifest.unlink(missing_ok=True)
            for folder in {p.parent for p in inputs}:
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            report.files_after += 1
            report.rows += rows
    return report
