"""One video end to end: decode → detect → track → clip actions → lake files.

``VideoAnalyzer`` holds the loaded models and is reused video after video (the Ray
actor in ``workers/`` owns one). It never raises for a bad video: the result says
``failed`` and why.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, TypeVar

import numpy as np
import pyarrow as pa

from pipeline.actions import ActionModel
from pipeline.clips import ClipAccumulator, ClipRow
from pipeline.config import RunConfig
from pipeline.decode import DecodeStats, Frame, VideoInfo, iter_frames
from pipeline.detect import Detections, Detector
from pipeline.errors import LakeError, VideolakeError
from pipeline.features import is_fall_class, person_class_ids
from pipeline.lake import ParquetSink, table_path
from pipeline.track import Tracker

__all__ = ["VideoJob", "VideoResult", "VideoAnalyzer", "prefetch"]

T = TypeVar("T")


@dataclass(frozen=True)
class VideoJob:
    """What the flow sends a worker: one probed video and where its results go."""

    video_id: str
    info: VideoInfo
    lake: str
    run_id: str
    config_hash: str


@dataclass
class VideoResult:
    """What a worker sends back: small, whatever the video's length."""

    video_id: str
    uri: str
    status: str
    error: str | None = None
    warning: str | None = None
    duration_s: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    frames_analyzed: int = 0
    n_detections: int = 0
    n_tracks: int = 0
    n_clips: int = 0
    clips_by_action: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    worker: str | None = None

    @classmethod
    def failed(cls, video_id: str, uri: str, error: str, info: VideoInfo | None = None) -> VideoResult:
        result = cls(video_id=video_id, uri=uri, status="failed", error=error)
        if info is not None:
            result.duration_s, result.fps, result.width, result.height, result.codec = (
                info.duration_s, info.fps, info.width, info.height, info.codec)
        return result

    def to_row(self, run_id: str) -> dict:
        row = asdict(self)
        row["run_id"] = run_id
        return row


class VideoAnalyzer:
    """Loaded models plus settings; ``analyze`` processes one video."""

    def __init__(self, config: RunConfig, detector: Detector, action_model: ActionModel) -> None:
        self.config = config
        self.detector = detector
        self.action_model = action_model
        self.person_ids = person_class_ids(detector.names)
        self.fall_ids = {i for i, name in detector.names.items() if is_fall_class(name)}

    def analyze(self, job: VideoJob, progress: Callable[[int], None] | None = None) -> VideoResult:
        started = time.perf_counter()
        info = job.info
        try:
            result = self._analyze(job, progress or (lambda n: None))
        except LakeError:
            raise  # the lake is broken for every video: that stops the run
        except VideolakeError as exc:
            result = VideoResult.failed(job.video_id, info.uri, str(exc), info)
        except Exception as exc:  # noqa: BLE001 - one broken video never sinks a run
            last = traceback.extract_tb(exc.__traceback__)[-1]
            where = f" at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
            result = VideoResult.failed(job.video_id, info.uri, f"{type(exc).__name__}: {exc}{where}", info)
        result.wall_s = time.perf_counter() - started
        return result

    def _analyze(self, job: VideoJob, progress: Callable[[int], None]) -> VideoResult:
        cfg, info = self.config, job.info
        video_fps = info.fps or 25.0
        track_fps = min(cfg.analysis_fps, video_fps) if cfg.analysis_fps > 0 else video_fps
        tracker = Tracker(cfg.tracker, fps=track_fps)
        clips = ClipAccumulator(
            self.action_model, cfg.clip_seconds, info.width, info.height,
            self.person_ids, self.fall_ids, cfg.min_track_frames,
        )
        stats = DecodeStats()
        clip_counts: Counter[str] = Counter()
        track_ids: set[int] = set()
        n_detections = 0
        det_path = table_path(job.lake, "detections", job.video_id, job.config_hash)
        clip_path = table_path(job.lake, "clips", job.video_id, job.config_hash)
        with ParquetSink(det_path, "detections") as det_sink, ParquetSink(clip_path, "clips") as clip_sink:
            frames = iter_frames(info.uri, cfg.analysis_fps, stats)
            for batch in prefetch(_batched(frames, cfg.batch), depth=2):
                detections = self.detector([f.image for f in batch])
                tracked = []
                for frame, dets in zip(batch, detections):
                    dets = tracker.update(dets, frame.image)
                    tracked.append(dets)
                    track_ids.update(int(t) for t in dets.tracker_id if t >= 0)
                    rows = clips.add(frame.t_s, dets)
                    _write_clips(clip_sink, rows, job, clip_counts)
                det_sink.write(_detection_columns(batch, tracked, self.detector.names, job))
                n_detections += sum(len(d) for d in tracked)
                progress(len(batch))
            _write_clips(clip_sink, clips.finish(), job, clip_counts)
        return VideoResult(
            video_id=job.video_id, uri=info.uri, status="ok",
            warning="; ".join(stats.warnings) or None,
            duration_s=info.duration_s if info.duration_s else stats.last_t_s,
            fps=info.fps, width=info.width, height=info.height, codec=info.codec,
            frames_analyzed=stats.frames_sampled, n_detections=n_detections, n_tracks=len(track_ids),
            n_clips=sum(clip_counts.values()), clips_by_action=dict(clip_counts),
        )


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


def _detection_columns(batch: list[Frame], detections: list[Detections], names: dict[int, str], job: VideoJob) -> dict:
    counts = [len(d) for d in detections]
    n = sum(counts)
    if n == 0:
        return {name: [] for name in ("video_id", "frame_index", "t_s", "track_id", "class_id", "class_name",
                                      "confidence", "x1", "y1", "x2", "y2", "run_id")}
    xyxy = np.concatenate([d.xyxy for d in detections])
    class_id = np.concatenate([d.class_id for d in detections])
    track_id = np.concatenate([d.tracker_id for d in detections])
    return {
        "video_id": [job.video_id] * n,
        "frame_index": np.repeat([f.frame_index for f in batch], counts),
        "t_s": np.repeat([f.t_s for f in batch], counts),
        "track_id": pa.array(track_id, type=pa.int64(), mask=track_id < 0),
        "class_id": class_id.astype(np.int32),
        "class_name": [names.get(int(c), str(c)) for c in class_id],
        "confidence": np.concatenate([d.confidence for d in detections]),
        "x1": xyxy[:, 0], "y1": xyxy[:, 1], "x2": xyxy[:, 2], "y2": xyxy[:, 3],
        "run_id": [job.run_id] * n,
    }


def _write_clips(sink: ParquetSink, rows: list[ClipRow], job: VideoJob, counts: Counter[str]) -> None:
    if not rows:
        return
    counts.update(r.action for r in rows)
    sink.write({
        "video_id": [job.video_id] * len(rows),
        "clip_index": [r.clip_index for r in rows],
        "t_start_s": [r.t_start_s for r in rows],
        "t_end_s": [r.t_end_s for r in rows],
        "track_id": [r.track_id for r in rows],
        "action": [r.action for r in rows],
        "action_confidence": [r.action_confidence for r in rows],
        "action_probs": [r.action_probs for r in rows],
        "n_frames": [r.n_frames for r in rows],
        "run_id": [job.run_id] * len(rows),
    })
