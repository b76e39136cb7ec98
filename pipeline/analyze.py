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
from videolake.pipeline.features import person_class_ids
from videolake.pipeline.gating import GatedDetection, GatedFrame, MotionGate, motion_image
from videolake.pipeline.lake import MemorySink, ParquetSink, table_path, write_table
from videolake.pipeline.motion import CameraMotion, CameraPose
from videolake.pipeline.shards import SHARD_TRACK_STRIDE, Shard
from videolake.pipeline.storage import redact
from videolake.pipeline.track import Tracker

if TYPE_CHECKING:  # torch loads only where a model runs (the Ray actor), not in the driver
    from videolake.pipeline.actions import ActionModel
    from videolake.pipeline.pose import PoseEstimator

__all__ = ["ShardJob", "ShardResult", "VideoAnalyzer", "VideoResult", "prefetch", "error_kind", "load_pose", "load_analyzer",
           "analyze_video", "commit_shard", "ledger_counts"]

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
    error_kind: str | None = None  # source | decode | storage | worker | timeout | internal
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
    features: str | None = None  # what the actions saw: "pose" (keypoints) or "box" (boxes only)
    frames_detected: int = 0  # of frames_analyzed, those the detector saw (the others carried: pipeline/gating.py)
    committed_at: datetime | None = None  # when its ledger row was written (``commit_shard``)


def load_analyzer(config: RunConfig, detector_path: str, actions_path: str, threads: int | None = None,
                  detector: Detector | None = None) -> VideoAnalyzer:
    """The models of ``config`` loaded once (detector, pose, actions): what a worker holds.

    ``detector``: one already loaded (a worker's pool of detectors for shards run side by side)."""
    from videolake.pipeline.actions import ActionModel

    if detector is None:
        detector = Detector(detector_path, imgsz=config.imgsz, conf=config.conf, device=config.device,
                            runtime=config.runtime, threads=threads)
    return VideoAnalyzer(config, detector, ActionModel.load(actions_path), load_pose(config, detector, threads))


@dataclass(frozen=True)
class VideoResult:
    """One video analysed in memory: its probe, detections and clips as Arrow tables (the lake's schemas)."""

    info: VideoInfo
    detections: pa.Table
    clips: pa.Table
    result: ShardResult

    def __repr__(self) -> str:
        return (f"VideoResult({self.info.uri}, {self.result.status}, frames={self.result.frames_analyzed}, "
                f"detections={self.detections.num_rows}, clips={self.clips.num_rows})")


def analyze_video(path: str, config: RunConfig, analyzer: VideoAnalyzer | None = None) -> VideoResult:
    """Analyse one video in this process, into memory: no lake, no Prefect, no Ray.

    The whole video is one shard, so track ids are final. ``analyzer`` reuses loaded models.
    """
    from videolake.pipeline.decode import probe
    from videolake.pipeline.models import resolve_actions, resolve_detector
    from videolake.pipeline.shards import plan_shards
    from videolake.pipeline.sources import discover

    if analyzer is None:
        analyzer = load_analyzer(config, resolve_detector(config.detector).path, resolve_actions(config.actions).path)
    info = probe(str(path), max_pixels=config.max_pixels, max_duration_s=config.max_duration_s)
    (shard,) = plan_shards(info, 0, config.clip_seconds)
    (source,) = discover([path])  # the video_id and content key a lake would give it
    job = ShardJob(source.video_id, source.content_key, info, shard, "", "in-memory", "in-memory")
    sinks: dict[str, MemorySink] = {}
    result = analyzer.analyze(job, sinks=lambda table: sinks.setdefault(table, MemorySink(table)))
    if result.status != "ok":
        raise (DecodeError if result.error_kind == "decode" else SourceError)(result.error or "analysis failed")
    return VideoResult(info, sinks["detections"].table(), sinks["clips"].table(), result)


def load_pose(config: RunConfig, detector: Detector, threads: int | None = None) -> PoseEstimator | None:
    """The top-down pose model of ``config.pose``; None for ``none`` or when the detector gives keypoints itself."""
    from videolake.pipeline.models import resolve_pose

    info = resolve_pose(config.pose)
    if info is None or detector.has_keypoints:
        return None
    from videolake.pipeline.pose import PoseEstimator

    return PoseEstimator(info.path, imgsz=config.pose_imgsz, device=detector.device, runtime=config.runtime, threads=threads)


def error_kind(exc: BaseException) -> str:
    """The ``error_kind`` the lake records for ``exc`` (``ledger.QUARANTINE_KINDS`` says which ones are skipped later)."""
    if isinstance(exc, SourceError):
        return "source"
    if isinstance(exc, DecodeError):
        return "decode"
    if isinstance(exc, TimedOut):
        return "timeout"
    if isinstance(exc, StorageError):
        return "storage"
    return "internal"


class VideoAnalyzer:
    """Loaded models plus settings; ``analyze`` processes one shard.

    Keypoints come from the detector when it is a pose model, else from ``pose`` (top-down on
    the tracked person boxes); with neither, actions use box features only (``features == "box"``).
    """

    def __init__(self, config: RunConfig, detector: Detector, action_model: ActionModel, pose: PoseEstimator | None = None) -> None:
        self.config = config
        self.detector = detector
        self.action_model = action_model
        self.pose = None if detector.has_keypoints else pose
        self.person_ids = person_class_ids(detector.names)

    @property
    def features(self) -> str:
        """``pose`` when actions see keypoints, ``box`` when they see boxes only."""
        return "pose" if self.detector.has_keypoints or self.pose is not None else "box"

    def analyze(self, job: ShardJob, progress: Callable[[int], None] | None = None,
                sinks: Callable[[str], ParquetSink | MemorySink] | None = None) -> ShardResult:
        """Analyse one shard into the lake (its files, then its ledger row), or into ``sinks(table)`` when given."""
        started = time.perf_counter()
        try:
            result = self._analyze(job, progress or (lambda n: None), sinks)
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

    def _analyze(self, job: ShardJob, progress: Callable[[int], None],
                 sinks: Callable[[str], ParquetSink | MemorySink] | None) -> ShardResult:
        open_sink = sinks or (lambda table: ParquetSink(job.path(table), table))
        cfg, info, shard = self.config, job.info, job.shard
        video_fps = info.fps or 25.0
        track_fps = min(cfg.analysis_fps, video_fps) if cfg.analysis_fps > 0 else video_fps
        tracker = Tracker(cfg.tracker, fps=track_fps)
        clips = ClipAccumulator(
            self.action_model, cfg.clip_seconds, info.width, info.height,
            self.person_ids, with_pose=self.features == "pose", min_frames=cfg.min_track_frames,
        )
        id_offset = shard.index * SHARD_TRACK_STRIDE
        stats = DecodeStats()
        clip_counts: Counter[str] = Counter()
        n_detections = frames_owned = frames_detected = 0
        frames = iter_frames(info.uri, cfg.analysis_fps, stats, start_s=shard.decode_from_s, end_s=shard.t_end_s,
                             first_frame_index=shard.decode_from_frame, max_pixels=cfg.max_pixels,
                             max_duration_s=cfg.max_duration_s)
        with open_sink("detections") as det_sink, open_sink("clips") as clip_sink, open_sink("overlaps") as overlap_sink:
            def emit_clips(rows: list[ClipRow]) -> None:
                owned = [r for r in rows if shard.owns(r.t_start_s)]
                clip_counts.update(r.action for r in owned)
                clip_sink.write(_clip_columns(owned, job, id_offset))

            size = cfg.batch_for(self.detector.device)
            motion = CameraMotion()

            def sampled(frames: Iterator[Frame]) -> Iterator[GatedFrame]:
                for frame in frames:  # on the decode thread: cheap, at low resolution
                    camera = motion.update(frame.image)
                    yield GatedFrame(frame, camera, motion_image(motion.working_image))

            pose = None if self.pose is None else (lambda images, tracked: self.pose(images, tracked, self.person_ids))
            gated = GatedDetection(self.detector, tracker.update, pose, MotionGate(cfg.motion_gate, cfg.motion_refresh_s, info.width),
                                   size)
            warm = (f for f in frames if f.t_s >= shard.warmup_from_s - 1e-9)
            for done in _batched(gated(prefetch(sampled(warm), depth=2 * size)), size):
                batch, tracked = [a.frame for a in done], [a.detections for a in done]
                cameras, carried = [a.camera for a in done], [a.carried for a in done]
                for a in done:
                    emit_clips(clips.add(a.frame.t_s, a.detections, a.camera))
                owned = [shard.owns(f.t_s) for f in batch]
                det_sink.write(_detection_columns(batch, tracked, owned, self.detector.names, job, id_offset, cameras=cameras,
                                                  carried=carried))
                if not shard.is_first:
                    warm_rows = [not o for o in owned]
                    overlap_sink.write(_detection_columns(batch, tracked, warm_rows, self.detector.names, job, id_offset, overlap=True))
                n_detections += sum(len(d) for d, o in zip(tracked, owned) if o)
                frames_owned += sum(owned)
                frames_detected += sum(o and not c for o, c in zip(owned, carried))
                progress(sum(owned))
            emit_clips(clips.finish())
        result = ShardResult(
            job.video_id, shard.index, "ok", warning="; ".join(stats.warnings) or None, frames_analyzed=frames_owned,
            n_detections=n_detections, n_clips=sum(clip_counts.values()), clips_by_action=dict(clip_counts),
            features=self.features, frames_detected=frames_detected,
        )
        if sinks is None:
            commit_shard(job, result)
        return result


def commit_shard(job: ShardJob, result: ShardResult) -> None:
    """Write the shard's ledger row, after its data files: the shard is committed once it exists. Its
    counts say which data files it staged (a table with no rows has none)."""
    shard = job.shard
    result.committed_at = datetime.now(timezone.utc)
    write_table(job.path("ledger"), "ledger", [{
        "video_id": job.video_id, "content_key": job.content_key,
        "t_start_s": shard.t_start_s, "t_end_s": None if shard.t_end_s == float("inf") else shard.t_end_s,
        "run_id": job.run_id, **ledger_counts(result),
    }])


def ledger_counts(result: ShardResult) -> dict:
    """What a committed shard's ledger row says of it: its index, frames, rows staged, warning, commit time."""
    return {"shard_index": result.shard_index, "frames_analyzed": result.frames_analyzed, "n_detections": result.n_detections,
            "n_clips": result.n_clips, "clips_by_action": json.dumps(result.clips_by_action, sort_keys=True),
            "warning": result.warning, "committed_at": result.committed_at}


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
    id_offset: int, overlap: bool = False, cameras: list[CameraPose] | None = None, carried: list[bool] | None = None,
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
        columns.update(_keypoint_columns(dets, n))
        if cameras is not None:
            poses = [c for c, k in zip(cameras, keep) if k]
            columns.update({name: np.repeat([getattr(c, attr) for c in poses], counts).astype(np.float32)
                            for name, attr in (("cam_scale", "scale"), ("cam_x", "x_px"), ("cam_y", "y_px"))})
        if carried is not None:
            columns["carried"] = np.repeat([c for c, k in zip(carried, keep) if k], counts).astype(bool)
        columns["class_name"] = [names.get(int(c), str(c)) for c in class_id]
        columns["run_id"] = [job.run_id] * n
    return columns


def _keypoint_columns(dets: list[Detections], n: int) -> dict:
    """``kp_x``, ``kp_y``, ``kp_conf`` (17 COCO keypoints, frame pixels) and ``pose_confidence``; null without a skeleton."""
    if any(d.keypoints is None for d in dets):
        return {}
    kp = np.concatenate([d.keypoints for d in dets]).reshape(n, 17, 3)
    pose_conf = np.concatenate([d.pose_confidence for d in dets])
    found = pose_conf > 0
    lists = {name: pa.array([list(v) if f else None for v, f in zip(np.round(kp[:, :, j], 2), found)], type=pa.list_(pa.float32()))
             for j, name in enumerate(("kp_x", "kp_y", "kp_conf"))}
    return {**lists, "pose_confidence": pa.array(pose_conf, type=pa.float32(), mask=~found)}


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
        "n_pose_frames": [r.n_pose_frames for r in rows],
        "run_id": [job.run_id] * n,
    }
