"""One shard of a video end to end: decode → detect → track → clip actions → lake files.

``VideoAnalyzer`` holds the loaded models and is reused shard after shard (the Ray actor
in ``workers/`` owns one). It never raises for a bad video: the result says ``failed``,
why, and what kind of failure it was. A shard's data files are written first and its
``ledger`` file last: a shard is committed exactly when its ledger file exists.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

import numpy as np
import pyarrow as pa

from videolake.pipeline.clips import ClipAccumulator, ClipRow
from videolake.pipeline.config import RunConfig
from videolake.pipeline.decode import DecodeStats, Frame, VideoInfo, iter_frames
from videolake.pipeline.detect import Detections, Detector
from videolake.pipeline.errors import DecodeError, LakeError, SourceError, StorageError, TimedOut, VideolakeError
from videolake.pipeline.features import is_fall_class, person_class_ids
from videolake.pipeline.lake import ParquetSink, table_path, write_table
from videolake.pipeline.shards import SHARD_TRACK_STRIDE, Shard
from videolake.pipeline.storage import redact
from videolake.pipeline.track import Tracker

if TYPE_CHECKING:  # torch loads only where a model runs (the Ray actor), not in the driver
    from videolake.pipeline.actions import ActionModel

__all__ = ["ShardJob", "ShardResult", "VideoAnalyzer", "prefetch", "error_kind"]

T = TypeVar("T")


@dataclass(frozen=True)
class ShardJob:
    """What the flow sends a worker: one shard of a probed video and where its results go."""

    video_id: str
    content_key: str
    info: VideoInfo
    shard: Shard
    lake: str
    run_id: str
    config_hash: str

    def path(self, table: str) -> str:
        return table_path(self.lake, table, config_hash=self.config_hash, video_id=self.video_id,
                          content_key=self.content_key, shard_key=self.shard.key())


@dataclass
class ShardResult:
    """What a worker sends back: small, whatever the shard's length."""

    video_id: str
    shard_index: int
    status: str
    error: str | None = None
    error_kind: str | None = None  # source | decode | worker | timeout | internal
    warning: str | None = None
    frames_analyzed: int = 0
    n_detections: int = 0
    n_clips: int = 0
    clips_by_action: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    worker: str | None = None
    node_id: str | None = None  # the Ray node that ran the shard
    node_ip: str | None = None
    gpu_ids: list[str] = field(default_factory=list)  # GPUs Ray assigned to the actor; empty on CPU
    attempts: int = 1


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, SourceError):
        return "source"
    if isinstance(exc, DecodeError):
        return "decode"
    if isinstance(exc, TimedOut):
        return "timeout"
    return "internal"


class VideoAnalyzer:
    """Loaded models plus settings; ``analyze`` processes one shard."""

    def __init__(self, config: RunConfig, detector: Detector, action_model: ActionModel) -> None:
        self.config = config
        self.detector = detector
        self.action_model = action_model
        self.person_ids = person_class_ids(detector.names)
        self.fall_ids = {i for i, name in detector.names.items() if is_fall_class(name)}

    def analyze(self, job: ShardJob, progress: Callable[[int], None] | None = None) -> ShardResult:
        started = time.perf_counter()
        try:
            result = self._analyze(job, progress or (lambda n: None))
        except (LakeError, StorageError):
            raise  # the lake is broken for every video, or the bucket failed for now: the flow sends the shard again
        except VideolakeError as exc:
            result = ShardResult(job.video_id, job.shard.index, "failed", redact(str(exc)), error_kind(exc))
        except Exception as exc:  # noqa: BLE001 - one broken video never sinks a run
            last = traceback.extract_tb(exc.__traceback__)[-1]
            where = f" at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
            result = ShardResult(job.video_id, job.shard.index, "failed", redact(f"{type(exc).__name__}: {exc}{where}"), "internal")
        result.wall_s = time.perf_counter() - started
        return result

    def _analyze(self, job: ShardJob, progress: Callable[[int], None]) -> ShardResult:
        cfg, info, shard = self.config, job.info, job.shard
        video_fps = info.fps or 25.0
        track_fps = min(cfg.analysis_fps, video_fps) if cfg.analysis_fps > 0 else video_fps
        tracker = Tracker(cfg.tracker, fps=track_fps)
        clips = ClipAccumulator(
            self.action_model, cfg.clip_seconds, info.width, info.height,
            self.person_ids, self.fall_ids, cfg.min_track_frames,
        )
        id_offset = shard.index * SHARD_TRACK_STRIDE
        stats = DecodeStats()
        clip_counts: Counter[str] = Counter()
        n_detections = frames_owned = 0
        frames = iter_frames(info.uri, cfg.analysis_fps, stats, start_s=shard.decode_from_s, end_s=shard.t_end_s,
                             first_frame_index=shard.decode_from_frame, max_pixels=cfg.max_pixels,
                             max_duration_s=cfg.max_duration_s)
        with ParquetSink(job.path("detections"), "detections") as det_sink, \
                ParquetSink(job.path("clips"), "clips") as clip_sink, \
                ParquetSink(job.path("overlaps"), "overlaps") as overlap_sink:
            def emit_clips(rows: list[ClipRow]) -> None:
                owned = [r for r in rows if shard.owns(r.t_start_s)]
                clip_counts.update(r.action for r in owned)
                clip_sink.write(_clip_columns(owned, job, id_offset))

            size = cfg.batch_for(self.detector.device)
            for batch in prefetch(_batched((f for f in frames if f.t_s >= shard.warmup_from_s - 1e-9), size), depth=2):
                detections = self.detector([f.image for f in batch])
                tracked = []
                for frame, dets in zip(batch, detections):
                    dets = tracker.update(dets, frame.image)
                    tracked.append(dets)
                    emit_clips(clips.add(frame.t_s, dets))
                owned = [shard.owns(f.t_s) for f in batch]
                det_sink.write(_detection_columns(batch, tracked, owned, self.detector.names, job, id_offset))
                if not shard.is_first:
                    warm = [not o for o in owned]
                    overlap_sink.write(_detection_columns(batch, tracked, warm, self.detector.names, job, id_offset, overlap=True))
                n_detections += sum(len(d) for d, o in zip(tracked, owned) if o)
                frames_owned += sum(owned)
                progress(sum(owned))
            emit_clips(clips.finish())
        result = ShardResult(
            job.video_id, shard.index, "ok", warning="; ".join(stats.warnings) or None, frames_analyzed=frames_owned,
            n_detections=n_detections, n_clips=sum(clip_counts.values()), clips_by_action=dict(clip_counts),
        )
        write_table(job.path("ledger"), "ledger", [{
            "video_id": job.video_id, "content_key": job.content_key, "shard_index": shard.index,
            "t_start_s": shard.t_start_s, "t_end_s": None if shard.t_end_s == float("inf") else shard.t_end_s,
            "frames_analyzed": frames_owned, "n_detections": n_detections, "n_clips": result.n_clips,
            "clips_by_action": json.dumps(result.clips_by_action, sort_keys=True), "warning": result.warning,
            "run_id": job.run_id, "committed_at": datetime.now(timezone.utc),
        }])
        return result


def _batched(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Run ``items`` on a background thread, at most ``depth`` ahead; errors re-raise here."""
    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            slots.put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None and stop.is_set():
                close()

    thread = threading.Thread(target=produce, name="videolake-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _detection_columns(
    batch: list[Frame], detections: list[Detections], keep: list[bool], names: dict[int, str], job: ShardJob,
    id_offset: int, overlap: bool = False,
) -> dict:
    frames = [f for f, k in zip(batch, keep) if k]
    dets = [d for d, k in zip(detections, keep) if k]
    counts = [len(d) for d in dets]
    n = sum(counts)
    if n == 0:
        return {}
    xyxy = np.concatenate([d.xyxy for d in dets])
    class_id = np.concatenate([d.class_id for d in dets])
    track_id = np.concatenate([d.tracker_id for d in dets])
    columns = {
        "video_id": [job.video_id] * n,
        "content_key": [job.content_key] * n,
        "shard_index": np.full(n, job.shard.index, dtype=np.int32),
        "frame_index": np.repeat([f.frame_index for f in frames], counts),
        "t_s": np.repeat([f.t_s for f in frames], counts),
        "track_id": pa.array(np.where(track_id >= 0, track_id + id_offset, -1), type=pa.int64(), mask=track_id < 0),
        "class_id": class_id.astype(np.int32),
        "confidence": np.concatenate([d.confidence for d in dets]),
        "x1": xyxy[:, 0], "y1": xyxy[:, 1], "x2": xyxy[:, 2], "y2": xyxy[:, 3],
    }
    if not overlap:
        columns["class_name"] = [names.get(int(c), str(c)) for c in class_id]
        columns["run_id"] = [job.run_id] * n
    return columns


def _clip_columns(rows: list[ClipRow], job: ShardJob, id_offset: int) -> dict:
    if not rows:
        return {}
    n = len(rows)
    return {
        "video_id": [job.video_id] * n,
        "content_key": [job.content_key] * n,
        "shard_index": [job.shard.index] * n,
        "clip_index": [r.clip_index for r in rows],
        "t_start_s": [r.t_start_s for r in rows],
        "t_end_s": [r.t_end_s for r in rows],
        "track_id": [r.track_id + id_offset for r in rows],
        "action": [r.action for r in rows],
        "action_confidence": [r.action_confidence for r in rows],
        "action_probs": [r.action_probs for r in rows],
        "n_frames": [r.n_frames for r in rows],
        "run_id": [job.run_id] * n,
    }
