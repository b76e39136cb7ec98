"""After a video's shards commit: one track id per person across shards, then the video is published.

Id scheme: inside shard ``k`` a track's raw id is ``k * 1_000_000 + n`` (``n`` from the
shard's tracker, from 1). Shard ``k``'s warm-up re-tracks the end of shard ``k - 1``'s
range; a warm-up track whose boxes overlap a previous-shard track on the same frames
(mean IoU >= 0.5 over at least 2 frames, best pairs first, one to one) continues it. The
``track_map`` table maps every raw id to the video's track id: 1, 2, ... in order of first
appearance. The query views apply the map, so ``track_id`` is global per video.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import product

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from videolake.pipeline import storage
from videolake.pipeline.analyze import ShardResult, ledger_counts
from videolake.pipeline.commit import VideoCommit, is_committed, publish
from videolake.pipeline.decode import VideoInfo
from videolake.pipeline.lake import Lake, table_path
from videolake.pipeline.shards import Shard
from videolake.pipeline.sources import DEFAULT_TIME_PATTERN, VideoSource, recorded_at_for

__all__ = ["VideoOutcome", "ActionEpisode", "ALERT_ACTIONS", "alert_episodes", "stitch_tracks", "finalize_video", "prepare_video",
           "MIN_IOU", "MIN_COMMON_FRAMES"]

MIN_IOU = 0.5
MIN_COMMON_FRAMES = 2
# Actions whose episodes a run announces (a Prefect event each, for automations that notify someone).
ALERT_ACTIONS = ("falling", "lying")


@dataclass(frozen=True)
class ActionEpisode:
    """Consecutive clips of one track with one alert action (the ``action_episodes`` view's row)."""

    video_id: str
    uri: str
    camera_id: str | None
    track_id: int
    action: str
    t_start_s: float
    t_end_s: float
    started_at: datetime | None  # wall clock of ``t_start_s``; None when the video's start time is unknown
    n_clips: int
    mean_confidence: float | None
    max_confidence: float | None


@dataclass
class VideoOutcome:
    """A finished video's line in the run summary."""

    video_id: str
    uri: str
    status: str
    error: str | None
    frames_analyzed: int
    n_detections: int
    n_tracks: int
    clips_by_action: dict[str, int]
    episodes: list[ActionEpisode] = field(default_factory=list)  # of ``ALERT_ACTIONS``


def _read(url: str, columns: list[str]) -> pa.Table | None:
    return storage.read_parquet(url, columns)


def stitch_tracks(lake: str, config_hash: str, video_id: str, content_key: str, shards: list[Shard]) -> dict[int, int]:
    """Raw track id → video track id, for every raw id in the video's committed detections."""
    def path(table: str, shard: Shard) -> str:
        return table_path(lake, table, config_hash=config_hash, video_id=video_id, content_key=content_key, shard_key=shard.key())

    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first_seen: dict[int, float] = {}
    cols = ["t_s", "track_id", "x1", "y1", "x2", "y2"]
    previous: pa.Table | None = None
    for shard in shards:
        table = _read(path("detections", shard), cols)
        if table is None:
            continue
        tracked = table.filter(pc.is_valid(table["track_id"]))
        if tracked.num_rows:
            firsts = tracked.group_by("track_id").aggregate([("t_s", "min")])
            for raw, t in zip(firsts["track_id"].to_pylist(), firsts["t_s_min"].to_pylist()):
                first_seen[raw] = min(t, first_seen.get(raw, t))
                find(raw)
        overlap = _read(path("overlaps", shard), cols) if shard.index > 0 else None
        if previous is not None and overlap is not None and overlap.num_rows:
            for a, b in _match(previous, overlap.filter(pc.is_valid(overlap["track_id"]))):
                parent[find(b)] = find(a)
        previous = tracked
    roots: dict[int, float] = {}
    for raw, t in first_seen.items():
        root = find(raw)
        roots[root] = min(t, roots.get(root, t))
    order = {root: i + 1 for i, root in enumerate(sorted(roots, key=lambda r: (roots[r], r)))}
    return {raw: order[find(raw)] for raw in first_seen}


def _match(previous: pa.Table, warmup: pa.Table) -> list[tuple[int, int]]:
    """One-to-one pairs (previous raw id, warm-up raw id) whose boxes agree on shared frames."""
    if warmup.num_rows == 0:
        return []
    t0 = pc.min(warmup["t_s"]).as_py()
    prev = previous.filter(pc.greater_equal(previous["t_s"], t0 - 1e-6))
    if prev.num_rows == 0:
        return []
    from supervision.detection.utils.iou_and_nms import box_iou_batch

    a_t, a_ids, a_xyxy = _boxes(prev)
    b_t, b_ids, b_xyxy = _boxes(warmup)
    ious: dict[tuple[int, int], list[float]] = {}
    for t in np.intersect1d(a_t, b_t):  # one IoU matrix per shared frame
        in_a, in_b = a_t == t, b_t == t
        overlap = box_iou_batch(a_xyxy[in_a], b_xyxy[in_b])  # rows: previous boxes, columns: warm-up boxes
        for pair, iou in zip(product(a_ids[in_a].tolist(), b_ids[in_b].tolist()), overlap.ravel().tolist()):
            ious.setdefault(pair, []).append(iou)
    scored = sorted(((float(np.mean(v)), pair) for pair, v in ious.items() if len(v) >= MIN_COMMON_FRAMES), reverse=True)
    used_a, used_b, pairs = set(), set(), []
    for score, (ia, ib) in scored:
        if score < MIN_IOU or ia in used_a or ib in used_b:
            continue
        used_a.add(ia)
        used_b.add(ib)
        pairs.append((ia, ib))
    return pairs


def _boxes(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tracked detections table's times (rounded to 0.1 ms, to pair frames), raw track ids and boxes (n, 4)."""
    xyxy = np.column_stack([table[k].to_numpy() for k in ("x1", "y1", "x2", "y2")])
    return np.round(table["t_s"].to_numpy(), 4), table["track_id"].to_numpy(), xyxy


def finalize_video(
    lake: Lake, config_hash: str, run_id: str, source: VideoSource, info: VideoInfo, shards: list[Shard],
    failures: dict[int, tuple[str, str]], wall_s: float, shard_rows: list[dict] | None = None,
    time_pattern: str | None = DEFAULT_TIME_PATTERN,
) -> VideoOutcome:
    """Stitch the video's track ids (when every shard committed) and publish it: ``lake.commit_video``."""
    outcome, commit = prepare_video(lake, config_hash, run_id, source, info, shards, failures, wall_s, shard_rows, time_pattern)
    if commit is not None:
        lake.commit_video(commit)
    return outcome


def prepare_video(
    lake: Lake, config_hash: str, run_id: str, source: VideoSource, info: VideoInfo, shards: list[Shard],
    failures: dict[int, tuple[str, str]], wall_s: float, shard_rows: list[dict] | None = None,
    time_pattern: str | None = DEFAULT_TIME_PATTERN, results: dict[int, ShardResult] | None = None,
) -> tuple[VideoOutcome, VideoCommit | None]:
    """Stitch the video's track ids (when every shard committed): its summary line, and the commit that
    publishes it (``lake.commit_video``, or many at once with ``lake.commit_videos``); ``None`` when
    another run published the same video meanwhile.

    ``failures`` maps shard index → (error kind, message) for shards that did not commit;
    ``shard_rows`` are the run's rows of the ``shards`` table for this video; ``results`` the results of
    the shards this run committed, by index (their ledger rows are not read again, only found).
    """
    video_id, content_key = source.video_id, source.content_key
    keys = [s.key() for s in shards]
    committed = [row for row in (_ledger_row(lake.url, config_hash, source, shard, (results or {}).get(shard.index))
                                 for shard in shards) if row is not None]
    clips: Counter[str] = Counter()
    for row in committed:
        clips.update(json.loads(row["clips_by_action"] or "{}"))
    frames = sum(r["frames_analyzed"] for r in committed)
    detections = sum(r["n_detections"] for r in committed)
    warnings = "; ".join(sorted({r["warning"] for r in committed if r["warning"]})) or None
    committed_at = {r["shard_index"]: r["committed_at"] for r in committed}
    mapping: dict[int, int] = {}
    if failures:
        first = min(failures)
        kind, message = failures[first]
        status = "failed"
        error = message if len(shards) <= 1 else f"shard {first} of {len(shards)}: {message}"
    elif len(committed) < len(shards) and is_committed(lake, config_hash, video_id):
        # another run analysed the same video at the same time, published it and removed the staged files
        lake.notify(f"video {video_id} was published by another run meanwhile; keeping its rows")
        return VideoOutcome(video_id, info.uri, "ok", None, frames, detections, 0, dict(clips)), None
    else:
        kind = error = None
        status = "ok"
        mapping = stitch_tracks(lake.url, config_hash, video_id, content_key, shards)
    recorded_at, recorded_from = recorded_at_for(source.uri, info.creation_time, time_pattern)
    n_tracks = len(set(mapping.values()))
    episodes = []
    if status == "ok" and any(clips.get(action) for action in ALERT_ACTIONS):  # read only when there is one
        staged = [storage.read_parquet(table_path(lake.url, "clips", config_hash=config_hash, video_id=video_id,
                                                  content_key=content_key, shard_key=key)) for key in keys]
        published = [publish("clips", t, video_id, content_key, config_hash, source.camera_id, recorded_at, mapping)
                     for t in staged if t is not None]
        episodes = alert_episodes(pa.concat_tables(published), info.uri) if published else []
    commit = VideoCommit(config_hash, run_id, video={
        "video_id": video_id, "content_key": content_key, "uri": info.uri, "status": status, "error": error,
        "error_kind": kind, "warning": warnings, "duration_s": info.duration_s, "fps": info.fps, "width": info.width,
        "height": info.height, "codec": info.codec, "frames_analyzed": frames, "n_detections": detections,
        "n_tracks": n_tracks, "n_clips": sum(clips.values()), "wall_s": wall_s, "shards_total": len(shards),
        "shards_failed": len(failures), "finished_at": datetime.now(timezone.utc), "run_id": run_id,
        "camera_id": source.camera_id, "recorded_at": recorded_at, "recorded_at_source": recorded_from,
        "size_bytes": source.size_bytes, "source_version": source.version, "config_hash": config_hash,
    }, shards=[{**row, "config_hash": config_hash, "committed_at": committed_at.get(row["shard_index"])}
               for row in shard_rows or []], shard_keys=[] if failures else keys,
        staged_rows={} if failures else _staged_rows(committed, shards),
        track_map=mapping)
    return VideoOutcome(video_id, info.uri, status, error, frames, detections, n_tracks, dict(clips), episodes), commit


def _ledger_row(lake: str, config_hash: str, source: VideoSource, shard: Shard, result: ShardResult | None) -> dict | None:
    """The shard's ledger row (``None``: not committed, or its staged files removed by another run): from
    ``result`` when this run committed it and its ledger file is still there, else read from that file."""
    url = table_path(lake, "ledger", config_hash=config_hash, video_id=source.video_id, content_key=source.content_key,
                     shard_key=shard.key())
    if result is not None and result.committed_at is not None:
        return ledger_counts(result) if storage.exists(url) else None
    table = _read(url, ["shard_index", "frames_analyzed", "n_detections", "n_clips", "clips_by_action", "warning", "committed_at"])
    return table.to_pylist()[0] if table is not None and table.num_rows else None


def _staged_rows(committed: list[dict], shards: list[Shard]) -> dict[str, list[int | None]]:
    """Rows each shard staged of ``detections`` and ``clips``, from its ledger row (``None``: no ledger row,
    its files are expected)."""
    by_index = {r["shard_index"]: r for r in committed}
    rows = [by_index.get(s.index, {}) for s in shards]
    return {"detections": [r.get("n_detections") for r in rows], "clips": [r.get("n_clips") for r in rows]}


def alert_episodes(clips: pa.Table, uri: str) -> list[ActionEpisode]:
    """The episodes of ``ALERT_ACTIONS`` in one video's published ``clips`` rows, in time order."""
    from videolake.pipeline.sqlpack import action_episodes

    rows = action_episodes(clips).to_pylist()
    return [ActionEpisode(r["video_id"], uri, r["camera_id"], r["track_id"], r["action"], r["t_start_s"], r["t_end_s"],
                          r["ts"], r["n_clips"], r["mean_confidence"], r["max_confidence"])
            for r in rows if r["action"] in ALERT_ACTIONS]
