"""The Ray actor that analyses videos: models load once, in the constructor.

This module imports Ray and the library, never Prefect: Ray worker processes must not
start Prefect servers of their own.
"""

from __future__ import annotations

import os
import socket

import ray

from pipeline.analyze import ShardJob, ShardResult, VideoAnalyzer
from pipeline.config import RunConfig
from pipeline.detect import Detector

__all__ = ["VideoWorker", "ProgressCounter"]


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
    """Holds a detector and an action model; ``process`` analyses one shard at a time.

    A worker process that dies (a crash in a decoder, the OOM killer) is restarted by Ray
    with the same constructor; the call in flight fails and Prefect retries that video.
    """

    def __init__(self, config: dict, detector_path: str, actions_path: str, num_threads: int,
                 progress_name: str | None = None) -> None:
        import torch  # here, not at the top: the driver imports this module and never needs torch

        from pipeline.actions import ActionModel

        torch.set_num_threads(max(1, num_threads))
        self.config = RunConfig.from_mapping(config)
        detector = Detector(detector_path, imgsz=self.config.imgsz, conf=self.config.conf, device=self.config.device,
                            runtime=self.config.runtime, threads=max(1, num_threads))
        self.analyzer = VideoAnalyzer(self.config, detector, ActionModel.load(actions_path))
        # Looked up by name: a handle passed as a constructor argument could be lost across restarts.
        self.progress = ray.get_actor(progress_name) if progress_name else None
        context = ray.get_runtime_context()
        self.name = f"{socket.gethostname()}:{context.get_node_id()[:8]}/{context.get_actor_id()[:8]}:pid{os.getpid()}"

    def describe(self) -> dict:
        detector = self.analyzer.detector
        return {"worker": self.name, "device": detector.device, "runtime": detector.runtime, "classes": detector.names}

    def process(self, job: ShardJob) -> ShardResult:
        report = (lambda n: self.progress.add.remote(n)) if self.progress is not None else None
        result = self.analyzer.analyze(job, progress=report)
        result.worker = self.name
        return result

    def pid(self) -> int:
        return os.getpid()
