"""A small lake written from ``videolake.pipeline.synthetic`` tracks, plus the labels that describe it.

Synthetic tracks (detector and pose output for one person over 1-4 s) are laid out in time inside
synthetic "videos": two tracks at a time, one per 4 s slot, so each track covers one or two
clip windows of 2 s. Detections and videos land in the lake's own tables; the labels
file says which action each track performs, under class names of our choosing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from videolake.pipeline.actions import ACTIONS
from videolake.pipeline.commit import VideoCommit
from videolake.pipeline.lake import Lake, table_path, write_table
from videolake.pipeline.synthetic import generate_tracks

CONFIG_HASH = "5e17e7c0ffee0001"
RUN_ID = "synthetic-run"
SLOT_S = 4.0
CLIP_S = 2.0
LANES = 2
TRACKS_PER_VIDEO = 12
# Users name their own classes: the labels use these, not the generator's names.
CLASS_NAMES = {"standing": "idle", "walking": "walk", "running": "run", "sitting": "seated", "falling": "fall",
               "lying": "on_floor"}


@dataclass(frozen=True)
class SyntheticLabels:
    path: Path
    n_rows: int
    video_ids: tuple[str, ...]
    uris: tuple[str, ...]


def write_synthetic_lake(lake: Path, labels_csv: Path, n_tracks: int, seed: int, prefix: str) -> SyntheticLabels:
    """Add ``n_tracks`` synthetic tracks as videos ``<prefix>-...`` to ``lake``; write their labels CSV."""
    opened = Lake.open_or_create(lake)
    by_size: dict[tuple[int, int], list] = defaultdict(list)
    for track in generate_tracks(n_tracks, seed):
        by_size[(track.frame_width, track.frame_height)].append(track)
    labels: dict[str, list] = defaultdict(list)
    video_ids, uris = [], []
    for (width, height), tracks in sorted(by_size.items()):
        for start in range(0, len(tracks), TRACKS_PER_VIDEO):
            chunk = tracks[start : start + TRACKS_PER_VIDEO]
            video_id = f"{prefix}-{width}x{height}-{start // TRACKS_PER_VIDEO}"
            uri = f"/data/synthetic/{video_id}.mp4"
            detections = []
            for i, track in enumerate(chunk):
                offset_s = (i // LANES) * SLOT_S
                t_s = track.t_s - min(0.0, float(track.t_s[0]))  # jittered timestamps may start just below 0
                for t, box, conf, kp, pose_conf in zip(t_s, track.xyxy, track.confidence, track.keypoints, track.pose_confidence):
                    found = pose_conf > 0
                    detections.append({
                        "video_id": video_id, "content_key": "synthetic", "shard_index": 0,
                        "frame_index": int(round((offset_s + t) * 30)), "t_s": float(offset_s + t),
                        "track_id": i + 1, "class_id": 0, "class_name": "Normal",
                        "confidence": float(conf), "x1": float(box[0]), "y1": float(box[1]), "x2": float(box[2]),
                        "y2": float(box[3]), "run_id": RUN_ID,
                        "kp_x": kp[:, 0].tolist() if found else None, "kp_y": kp[:, 1].tolist() if found else None,
                        "kp_conf": kp[:, 2].tolist() if found else None, "pose_confidence": float(pose_conf) if found else None,
                    })
                labels["video_id"].append(video_id if i % 2 == 0 else uri)  # both ways of naming a video
                labels["t_start_s"].append(round(offset_s + float(t_s[0]), 3))
                labels["t_end_s"].append(round(offset_s + float(t_s[-1]) + 0.05, 3))
                labels["action"].append(CLASS_NAMES[ACTIONS[track.label]])
                labels["track_id"].append(i + 1)
            detections.sort(key=lambda d: (d["t_s"], d["track_id"]))
            duration_s = SLOT_S * ((len(chunk) + LANES - 1) // LANES)
            publish_video(opened, video_id, config_hash=CONFIG_HASH, content_key="synthetic", run_id=RUN_ID,
                          detections=detections, video={
                "uri": uri, "finished_at": datetime(2025, 1, 1, tzinfo=timezone.utc), "duration_s": duration_s, "fps": 30.0,
                "width": width, "height": height, "codec": "synthetic", "frames_analyzed": int(duration_s * 30),
                "n_detections": len(detections), "n_tracks": len(chunk), "n_clips": 0,
            })
            video_ids.append(video_id)
            uris.append(uri)
    _write_run(opened)
    labels_csv.parent.mkdir(parents=True, exist_ok=True)
    pcsv.write_csv(pa.table(dict(labels)), labels_csv)
    return SyntheticLabels(labels_csv, len(labels["action"]), tuple(video_ids), tuple(uris))


def _write_run(lake: Lake) -> None:
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    config = {"analysis_fps": 0.0, "clip_seconds": CLIP_S, "min_track_frames": 4, "imgsz": 640, "conf": 0.25,
              "tracker": "bytetrack", "detector": "synthetic", "actions": "default"}
    lake.commit_run({
        "run_id": RUN_ID, "started_at": now, "finished_at": now, "config": json.dumps(config, sort_keys=True),
        "config_hash": CONFIG_HASH, "detector": "synthetic", "action_model": "none", "action_classes": [], "features": "pose",
        "videos_ok": 0, "videos_failed": 0, "frames_analyzed": 0, "wall_s": 0.0,
    })


def class_counts(labels_csv: Path) -> dict[str, int]:
    actions = pcsv.read_csv(labels_csv).column("action").to_pylist()
    return {a: int(n) for a, n in zip(*np.unique(actions, return_counts=True))}


def publish_video(
    lake, video_id: str, *, config_hash: str = "h", content_key: str = "c", detections=(), clips=(), video=None,
    track_map=None, run_id: str = "r", shards=None,
) -> Lake:
    """Publish one video as a run does: its rows as staged shard files (by ``shard_index``), then
    ``lake.commit_video``. ``video`` overrides fields of its ``videos`` row (``status``, ``finished_at``...)."""
    lake = lake if isinstance(lake, Lake) else Lake.open_or_create(lake)
    lake.commit_video(stage_video(lake, video_id, config_hash=config_hash, content_key=content_key, detections=detections,
                                  clips=clips, video=video, track_map=track_map, run_id=run_id, shards=shards))
    return lake


def stage_video(
    lake: Lake, video_id: str, *, config_hash: str = "h", content_key: str = "c", detections=(), clips=(), video=None,
    track_map=None, run_id: str = "r", shards=None,
) -> VideoCommit:
    """``publish_video`` up to the commit: the staged shard files written, the commit that publishes them returned."""
    indices = sorted({int(r.get("shard_index") or 0) for r in [*detections, *clips]} | set(shards or ()) or {0})
    row = {"video_id": video_id, "content_key": content_key, "status": "ok", "run_id": run_id, "config_hash": config_hash,
           "finished_at": datetime.now(timezone.utc), **(video or {})}
    keys, staged_rows = [], {"detections": [], "clips": []}
    for index in indices:
        kw = dict(config_hash=config_hash, video_id=video_id, content_key=content_key, shard_key=f"s{index:05d}")
        base = {"video_id": video_id, "content_key": content_key, "shard_index": index, "run_id": run_id}
        for table, rows in (("detections", detections), ("clips", clips)):
            staged = [{**base, **r} for r in rows if int(r.get("shard_index") or 0) == index]
            write_table(table_path(lake.url, table, **kw), table, staged)  # none: no file, as a shard stages
            staged_rows[table].append(len(staged))
        write_table(table_path(lake.url, "ledger", **kw), "ledger",
                    [{**base, "n_detections": staged_rows["detections"][-1], "n_clips": staged_rows["clips"][-1]}])
        keys.append(kw["shard_key"])
    ok = row["status"] == "ok"
    return VideoCommit(config_hash, run_id, row, shard_keys=keys if ok else [], track_map=dict(track_map or {}),
                       staged_rows=staged_rows if ok else {})


def write_sharded_video(lake, video_id: str, n_shards: int, frames_per_shard: int = 10) -> Lake:
    """One published video of ``n_shards`` shards (config ``h``, content ``c``), one track."""
    rows = [{"shard_index": shard, "frame_index": shard * frames_per_shard + i, "t_s": shard + i / frames_per_shard,
             "track_id": 1, "class_id": 0, "class_name": "Normal", "confidence": 0.9, "x1": 0, "y1": 0, "x2": 1, "y2": 1}
            for shard in range(n_shards) for i in range(frames_per_shard)]
    return publish_video(lake, video_id, detections=rows)
