"""Benchmark: the Delta lake's commits and logs, on local disk and on a loopback S3 server (moto).

    python bench/lake.py [--videos 30] [--log-commits 10000] [--s3-log-commits 2000] [--out bench/LAKE.md]

Measures:
1. commit cost per video: ``lake.commit_video`` of a finished video whose shards are staged
   (2 shards, 2,000 detections, 100 clips): the intent, one Delta transaction each for
   detections, clips, shards and videos, and the staging clean-up; the same on the bucket;
2. a long log: a ``detections`` table of N commits (one per video, as a lake of N videos has),
   opened, scanned and committed to once more: without a checkpoint, with one (delta-rs writes
   one every ``delta.checkpointInterval`` = 100 commits by itself), and after a compaction. The N
   commits are written straight into ``_delta_log`` (one add action and one 1-row file each,
   what delta-rs writes for an append) so the bench does not spend N commits' time building them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.objectstore import moto_server, s3_env  # noqa: E402  (the same loopback server the tests use)


def _stage_video(lake, video_id: str, detections: int = 2000, clips: int = 100, shards: int = 2):  # noqa: ANN001, ANN201
    from videolake.pipeline.commit import VideoCommit
    from videolake.pipeline.lake import table_path, write_table

    keys = []
    for shard in range(shards):
        kw = dict(config_hash="bench", video_id=video_id, content_key="c", shard_key=f"s{shard:05d}")
        base = {"video_id": video_id, "content_key": "c", "shard_index": shard, "run_id": "bench"}
        n = detections // shards
        write_table(table_path(lake.url, "detections", **kw), "detections", [{
            **base, "frame_index": i, "t_s": i / 8, "track_id": shard * 1_000_000 + i % 7, "class_id": 0, "class_name": "Normal",
            "confidence": 0.9, "x1": 1.0, "y1": 2.0, "x2": 3.0, "y2": 4.0} for i in range(n)])
        write_table(table_path(lake.url, "clips", **kw), "clips", [{
            **base, "clip_index": i, "t_start_s": 2.0 * i, "t_end_s": 2.0 * i + 2, "track_id": shard * 1_000_000 + i % 7,
            "action": "walking", "action_confidence": 0.8, "action_probs": [0.1, 0.8, 0.1], "n_frames": 16}
            for i in range(clips // shards)])
        write_table(table_path(lake.url, "ledger", **kw), "ledger", [base])
        keys.append(kw["shard_key"])
    track_map = {shard * 1_000_000 + i: i + 1 for shard in range(shards) for i in range(7)}
    video = {"video_id": video_id, "content_key": "c", "status": "ok", "run_id": "bench", "config_hash": "bench",
             "finished_at": datetime.now(timezone.utc), "camera_id": "cam1", "recorded_at": datetime(2026, 5, 1, tzinfo=timezone.utc)}
    shard_rows = [{"video_id": video_id, "content_key": "c", "shard_index": s, "status": "ok", "run_id": "bench"} for s in range(shards)]
    return VideoCommit("bench", "bench", video, shard_rows, keys, track_map)


def commit_cost(url: str, videos: int) -> dict:
    from videolake.pipeline.lake import Lake

    lake = Lake.open_or_create(url)
    times = []
    for i in range(videos):
        commit = _stage_video(lake, f"video-{i:05d}")
        t0 = time.perf_counter()
        lake.commit_video(commit)
        times.append(time.perf_counter() - t0)
    rows = lake.sql("SELECT count(*) AS n FROM detections").column("n")[0].as_py()
    assert rows == videos * 2000, rows
    times.sort()
    return {"median_ms": 1000 * statistics.median(times), "p90_ms": 1000 * times[int(0.9 * (len(times) - 1))],
            "first_ms": 1000 * times[0]}


def synthesize_log(root: Path, commits: int) -> str:
    """A ``detections`` Delta table at ``root`` with ``commits`` appends of one 1-row file each."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    from videolake.pipeline.lake import _TABLE_CONFIG, published_schema

    schema = published_schema("detections")
    DeltaTable.create(str(root), schema=schema, partition_by=["config_hash"], configuration=_TABLE_CONFIG)
    data_schema = pa.schema([f for f in schema if f.name != "config_hash"])
    row = {f.name: [None] for f in data_schema} | {"video_id": ["v"], "frame_index": [0], "t_s": [0.0]}
    (root / "config_hash=bench").mkdir()
    now_ms = int(time.time() * 1000)
    for version in range(1, commits + 1):
        name = f"config_hash=bench/part-{version:06d}-{uuid.uuid4()}.parquet"
        pq.write_table(pa.table({**row, "video_id": [f"video-{version:06d}"]}, schema=data_schema), root / name)
        stats = {"numRecords": 1, "minValues": {"video_id": f"video-{version:06d}"}, "maxValues": {"video_id": f"video-{version:06d}"},
                 "nullCount": {}}
        actions = [
            {"add": {"path": name, "partitionValues": {"config_hash": "bench"}, "size": (root / name).stat().st_size,
                     "modificationTime": now_ms, "dataChange": True, "stats": json.dumps(stats)}},
            {"commitInfo": {"timestamp": now_ms, "operation": "WRITE", "operationParameters": {"mode": "Append"}}},
        ]
        (root / "_delta_log" / f"{version:020d}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")
    return str(root)


def log_cost(uri: str, storage_options: dict, commits: int) -> dict:
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from videolake.pipeline.lake import published_schema

    out = {}
    for phase in ("no checkpoint", "checkpoint", "compacted"):
        if phase == "checkpoint":
            DeltaTable(uri, storage_options=storage_options).create_checkpoint()
        if phase == "compacted":  # what `videolake compact` does to it: optimize, then a checkpoint
            dt = DeltaTable(uri, storage_options=storage_options)
            dt.optimize.compact()
            dt.create_checkpoint()
        t0 = time.perf_counter()
        dt = DeltaTable(uri, storage_options=storage_options)
        open_s = time.perf_counter() - t0
        assert dt.version() >= commits, dt.version()
        t0 = time.perf_counter()
        n = dt.to_pyarrow_dataset().count_rows()
        scan_s = time.perf_counter() - t0
        schema = published_schema("detections")
        row = pa.table({f.name: pa.nulls(1, f.type) for f in schema}, schema=schema)
        row = row.set_column(schema.get_field_index("config_hash"), "config_hash", pa.array(["bench"]))
        t0 = time.perf_counter()
        write_deltalake(uri, row, mode="append", partition_by=["config_hash"], storage_options=storage_options)
        commit_s = time.perf_counter() - t0
        out[phase] = {"open_s": open_s, "scan_s": scan_s, "commit_s": commit_s, "rows": n}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=30)
    parser.add_argument("--log-commits", type=int, default=10_000)
    parser.add_argument("--s3-log-commits", type=int, default=2_000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "LAKE.md"))
    args = parser.parse_args()

    load = os.getloadavg()[0]
    lines = [f"# Lake benchmark ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores (load average {load:.1f} at the start, shared), "
             f"Python {platform.python_version()}; S3 = moto server on 127.0.0.1 (one process, in-memory).", ""]
    with moto_server() as server, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(s3_env(server.url))
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.mkdir("lake")
        local = commit_cost(str(Path(tmp) / "lake"), args.videos)
        remote = commit_cost("s3://lake/commits", args.videos)
        lines += [f"Commit of one finished video ({args.videos} videos, each 2 shards, 2,000 detections, 100 clips; "
                  "intent + 4 Delta transactions + staging clean-up):", "",
                  "| lake | median ms | p90 ms |", "|---|---|---|",
                  f"| local disk | {local['median_ms']:.0f} | {local['p90_ms']:.0f} |",
                  f"| S3 (moto, loopback) | {remote['median_ms']:.0f} | {remote['p90_ms']:.0f} |", ""]

        from videolake.pipeline.lake import delta_storage_options

        t0 = time.perf_counter()
        synthesize_log(Path(tmp) / "log", args.log_commits)
        built_s = time.perf_counter() - t0
        local_log = log_cost(str(Path(tmp) / "log"), {}, args.log_commits)
        synthesize_log(Path(tmp) / "s3log", args.s3_log_commits)
        fs.put(str(Path(tmp) / "s3log"), "lake/s3log", recursive=True)
        remote_log = log_cost("s3://lake/s3log", delta_storage_options("s3://lake/s3log"), args.s3_log_commits)
        lines += [f"A long log: a `detections` table of N one-file commits (a lake of N videos), opened, scanned "
                  f"(count of rows through the pyarrow dataset) and committed to once more; then again after a "
                  f"checkpoint, then after `optimize` (built in {built_s:.0f} s):", "",
                  "| table | log | open s | scan s | one more commit s |", "|---|---|---|---|---|"]
        for name, result, n in (("local disk", local_log, args.log_commits), ("S3 (moto)", remote_log, args.s3_log_commits)):
            for phase, r in result.items():
                lines.append(f"| {name}, {n:,} commits | {phase} | {r['open_s']:.2f} | {r['scan_s']:.2f} | {r['commit_s']:.2f} |")
        lines += ["", "delta-rs writes a checkpoint every 100 commits (`delta.checkpointInterval`), so a reader or writer "
                  "of a real lake replays at most 100 JSON commits past the last one; `videolake compact` also writes "
                  "one and merges the small files (`optimize`).", ""]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    print(json.dumps({"commit_local": local, "commit_s3": remote, "log_local": local_log, "log_s3": remote_log}))


if __name__ == "__main__":
    main()
