"""The Ray actor that analyses videos: models load once, in the constructor.

This module imports Ray and the library, never Prefect: Ray worker processes must not
start Prefect servers of their own.
"""

from __future__ import annotations

import importlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field

import ray

from videolake.pipeline.analyze import ShardJob, ShardResult, VideoAnalyzer, load_analyzer
from videolake.pipeline.commit import VideoCommit
from videolake.pipeline.config import RunConfig
from videolake.pipeline.decode import VideoInfo, probe, use_hardware_decoding
from videolake.pipeline.detect import Detector
from videolake.pipeline.lake import Lake
from videolake.pipeline.shards import Shard
from videolake.pipeline.sources import VideoSource
from videolake.pipeline.stitch import VideoOutcome, prepare_video
from videolake.workers.detectors import DetectorPool

__all__ = ["VideoWorker", "ProgressCounter", "VideoToFinalize"]

# A worker adds its frames to the progress counter at most this often.
_PROGRESS_EVERY_S = 0.5


@dataclass(frozen=True)
class VideoToFinalize:
    """A video whose shards all came back: what a worker needs to stitch it and publish it."""

    lake: str  # the lake's URL
    config_hash: str
    run_id: str
    source: VideoSource
    info: VideoInfo
    shards: list[Shard]
    failures: dict[int, tuple[str, str]]  # shard index → (error kind, message), for shards that did not commit
    wall_s: float
    shard_rows: list[dict]  # its rows of the ``shards`` table
    time_pattern: str | None
    results: dict[int, ShardResult] = field(default_factory=dict)  # of the shards this run committed, by index


@ray.remote(num_cpus=0)
class ProgressCounter:
    """Frames analysed so far, summed over all workers; the flow polls it for the progress bar."""

    def __init__(self) -> None:
        self._frames = 0

    def add(self, frames: int) -> None:
        self._frames += frames

    def frames(self) -> int:
        return self._frames


@ray.remote(max_restarts=-1, max_task_retries=0)
class VideoWorker:
    """Holds a detector and an action model; ``process`` analyses a shard, ``probe`` and
    ``finalize`` do a video's reading before and its writing after. On CUDA the actor runs
    ``decoders`` calls at once (Ray's ``max_concurrency``), each shard decoding in its own thread
    with a detector of its own on the shared GPU (batches of ``batch``, 32, at fp16).

    A worker process that dies (a crash in a decoder, the OOM killer) is restarted by Ray
    with the same constructor; the call in flight fails and the flow sends it again.
    """

    def __init__(self, config: dict, detector_path: str, actions_path: str, num_threads: int,
                 progress_name: str | None = None, storage_env: dict[str, str] | None = None) -> None:
        # Bucket endpoint and credentials from the driver, as an argument: never in a runtime env or a log.
        os.environ.update(storage_env or {})
        self.config = RunConfig.from_mapping(config)
        self.analyzer = _analyzer(self.config, detector_path, actions_path, max(1, num_threads))
        # Looked up by name: a handle passed as a constructor argument could be lost across restarts.
        self.progress = ray.get_actor(progress_name) if progress_name else None
        self._unsent_frames, self._sent_at, self._sending = 0, 0.0, threading.Lock()
        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        self.gpu_ids = [str(i) for i in context.get_accelerator_ids().get("GPU", [])]  # as Ray assigned them
        self.name = f"{socket.gethostname()}:{self.node_id[:8]}/{context.get_actor_id()[:8]}:pid{os.getpid()}"
        self._opened = threading.local()  # the lakes each thread opened (calls run side by side on CUDA)

    def describe(self) -> dict:
        detector = self.analyzer.detector
        return {"worker": self.name, "node_id": self.node_id, "node_ip": self.node_ip, "gpu_ids": self.gpu_ids,
                "device": detector.device, "runtime": detector.runtime, "classes": detector.names}

    def process(self, job: ShardJob) -> ShardResult:
        report = self._report if self.progress is not None else None
        result = self.analyzer.analyze(job, progress=report)
        result.worker, result.node_id, result.node_ip, result.gpu_ids = self.name, self.node_id, self.node_ip, self.gpu_ids
        return result

    def probe(self, uri: str, max_pixels: int, max_duration_s: float) -> VideoInfo:
        """A video's metadata and keyframe index (it reads every packet: done here, not in the driver)."""
        return probe(uri, max_pixels=max_pixels, max_duration_s=max_duration_s)

    def finalize(self, video: VideoToFinalize) -> tuple[VideoOutcome, VideoCommit | None]:
        """Stitch the video's track ids: its summary line and the commit that publishes it (``publish``
        publishes many at once; ``None``: another run published the video meanwhile)."""
        return prepare_video(self._lake(video.lake), video.config_hash, video.run_id, video.source, video.info,
                             video.shards, video.failures, video.wall_s, video.shard_rows, video.time_pattern, video.results)

    def publish(self, lake: str, commits: list[VideoCommit]) -> None:
        """Publish finished videos: their rows of ``detections``, ``clips``, ``shards`` and ``videos``, one
        Delta transaction per table for all of them (``Lake.commit_videos``)."""
        self._lake(lake).commit_videos(commits)

    def pid(self) -> int:
        return os.getpid()

    def _report(self, frames: int) -> None:
        """Frames analysed, sent to the progress counter at most every ``_PROGRESS_EVERY_S`` (a call per
        batch or shard cost the counter and this worker about a millisecond of CPU each); the rest goes
        with the next report, and the flow's summary counts every frame anyway."""
        with self._sending:
            self._unsent_frames += frames
            if time.monotonic() - self._sent_at < _PROGRESS_EVERY_S:
                return
            frames, self._unsent_frames, self._sent_at = self._unsent_frames, 0, time.monotonic()
        self.progress.add.remote(frames)

    def _lake(self, url: str) -> Lake:
        """The lake at ``url``, opened once per thread: its Delta tables are then only brought up to date."""
        lakes = self._opened.__dict__.setdefault("lakes", {})
        if url not in lakes:
            lakes[url] = Lake(url)
        return lakes[url]


def _analyzer(config: RunConfig, detector_path: str, actions_path: str, num_threads: int) -> VideoAnalyzer:
    """The worker's models, loaded once. ``VIDEOLAKE_ANALYZER=module:Class`` (benchmarks of the
    orchestration only, e.g. ``bench/scale.py``'s model-free analyzer) builds ``Class(config)`` instead."""
    name = os.environ.get("VIDEOLAKE_ANALYZER")
    if name:
        module, _, cls = name.partition(":")
        return getattr(importlib.import_module(module), cls)(config)
    import torch  # here, not at the top: the driver imports this module and never needs torch

    torch.set_num_threads(num_threads)
    detectors = [Detector(detector_path, imgsz=config.imgsz, conf=config.conf, device=config.device,
                          runtime=config.runtime, threads=num_threads)
                 for _ in range(config.decoders_for(config.device))]
    if detectors[0].device.startswith("cuda"):
        use_hardware_decoding("cuda")  # NVDEC where the node's FFmpeg and GPU have it, else software
    detector = detectors[0] if len(detectors) == 1 else DetectorPool(detectors)  # one per shard run at once
    return load_analyzer(config, detector_path, actions_path, num_threads, detector=detector)
