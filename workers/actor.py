"""The Ray actor that analyses videos: models load once, in the constructor.

This module imports Ray and the library, never Prefect: Ray worker processes must not
start Prefect servers of their own.
"""

from __future__ import annotations

import os
import socket

import ray

from videolake.pipeline.analyze import ShardJob, ShardResult, load_analyzer
from videolake.pipeline.config import RunConfig

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
                 progress_name: str | None = None, storage_env: dict[str, str] | None = None) -> None:
        import torch  # here, not at the top: the driver imports this module and never needs torch

        # Bucket endpoint and credentials from the driver, as an argument: never in a runtime env or a log.
        os.environ.update(storage_env or {})
        torch.set_num_threads(max(1, num_threads))
        self.config = RunConfig.from_mapping(config)
        self.analyzer = load_analyzer(self.config, detector_path, actions_path, threads=max(1, num_threads))
        # Looked up by name: a handle passed as a constructor argument could be lost across restarts.
        self.progress = ray.get_actor(progress_name) if progress_name else None
        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        self.gpu_ids = [str(i) for i in context.get_accelerator_ids().get("GPU", [])]  # as Ray assigned them
        self.name = f"{socket.gethostname()}:{self.node_id[:8]}/{context.get_actor_id()[:8]}:pid{os.getpid()}"

    def describe(self) -> dict:
        detector = self.analyzer.detector
        return {"worker": self.name, "node_id": self.node_id, "node_ip": self.node_ip, "gpu_ids": self.gpu_ids,
                "device": detector.device, "runtime": detector.runtime, "classes": detector.names}

    def process(self, job: ShardJob) -> ShardResult:
        report = (lambda n: self.progress.add.remote(n)) if self.progress is not None else None
        result = self.analyzer.analyze(job, progress=report)
        result.worker, result.node_id, result.node_ip, result.gpu_ids = self.name, self.node_id, self.node_ip, self.gpu_ids
        return result

    def pid(self) -> int:
        return os.getpid()
