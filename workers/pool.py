"""Starting or joining Ray, sizing and placing the actor pool, handing videos to idle actors."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError, WorkerCrashedError

from pipeline.analyze import ShardJob, ShardResult
from pipeline.config import RunConfig
from pipeline.errors import ConfigError, VideolakeError
from pipeline.models import ModelInfo
from pipeline.storage import forwarded_env
from workers.actor import ProgressCounter, VideoWorker

__all__ = ["WorkerPool", "WorkerLost", "ShardTimeout", "ray_session", "plan_workers", "WorkerPlan"]

_LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024


class WorkerLost(VideolakeError):
    """The actor running a shard died; the shard can be retried on a restarted actor."""


class ShardTimeout(VideolakeError):
    """A shard ran past its time limit; its actor was restarted to stop it."""


@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    num_cpus: float
    num_gpus: float
    threads: int
    device: str


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[str]:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start a local Ray for the block."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        yield "existing"
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    else:
        ray.init(
            num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
            object_store_memory=_LOCAL_OBJECT_STORE_BYTES, logging_level=logging.ERROR,
        )
    try:
        yield address or "local"
    finally:
        ray.shutdown()


def plan_workers(config: RunConfig) -> WorkerPlan:
    """How many actors, with which resources, from the config and the cluster's resources.

    CPU: actors of up to 4 threads each share the cluster's CPUs (fractions allowed, so
    ``--workers`` above the CPU count still schedules). CUDA: one actor per GPU by default;
    ``gpus_per_worker`` below 1 (or more workers than GPUs) shares a GPU between actors.
    """
    resources = ray.cluster_resources()
    cpus = max(1, int(resources.get("CPU", 1)))
    gpus = float(resources.get("GPU", 0))
    device = config.device if config.device != "auto" else ("cuda" if gpus >= 1 else "cpu")
    if device.startswith("cuda"):
        if gpus <= 0:
            raise ConfigError(f"device {config.device} needs a GPU, but the Ray cluster has none")
        share = config.gpus_per_worker
        workers = config.workers or max(1, int(gpus / share) if share else int(gpus))
        share = share or min(1.0, gpus / workers)
        return WorkerPlan(workers, num_cpus=1, num_gpus=share, threads=2, device=device)
    workers = config.workers or max(1, cpus // min(4, cpus))
    return WorkerPlan(workers, num_cpus=cpus / workers, num_gpus=0, threads=max(1, cpus // workers), device="cpu")


def _await_alive(actor, timeout_s: float = 300.0) -> None:  # noqa: ANN001 - a VideoWorker handle
    """Wait for a restarted actor to finish its constructor (loading its models)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.get(actor.describe.remote(), timeout=10)
            return
        except (ActorUnavailableError, GetTimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class WorkerPool:
    """A fixed set of ``VideoWorker`` actors; ``process`` blocks until an actor is free."""

    def __init__(self, config: RunConfig, detector: ModelInfo, actions: ModelInfo) -> None:
        self.plan = plan_workers(config)
        settings = {**config.to_dict(), "device": self.plan.device}
        progress_name = f"videolake-progress-{uuid.uuid4().hex}"
        self.progress = ProgressCounter.options(name=progress_name).remote()
        self.actors = [
            VideoWorker.options(num_cpus=self.plan.num_cpus, num_gpus=self.plan.num_gpus).remote(
                settings, detector.path, actions.path, self.plan.threads, progress_name, storage_env=forwarded_env()
            )
            for _ in range(self.plan.workers)
        ]
        self._restarting: set = set()
        self._idle: queue.Queue = queue.Queue()
        for actor in self.actors:
            self._idle.put(actor)

    def wait_ready(self) -> list[dict]:
        """Block until every actor loaded its models; a model that cannot load raises here."""
        try:
            return ray.get([a.describe.remote() for a in self.actors])
        except RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            if isinstance(cause, VideolakeError):
                raise cause from None
            raise

    def process(self, job: ShardJob, timeout_s: float | None = None) -> ShardResult:
        actor = self._idle.get()
        try:
            if actor in self._restarting:
                _await_alive(actor)
                self._restarting.discard(actor)
            return ray.get(actor.process.remote(job), timeout=timeout_s)
        except GetTimeoutError:
            ray.kill(actor, no_restart=False)  # stops the runaway call; Ray restarts the actor
            self._restarting.add(actor)
            raise ShardTimeout(f"shard {job.shard.index} of {job.info.uri} ran past the {timeout_s:.0f} s limit") from None
        except (RayActorError, ActorUnavailableError, WorkerCrashedError) as exc:
            self._restarting.add(actor)  # Ray restarts it; the next shard waits until it is back
            raise WorkerLost(f"worker died while analysing {job.info.uri}: {type(exc).__name__}") from None
        finally:
            self._idle.put(actor)

    def frames_done(self) -> int:
        return ray.get(self.progress.frames.remote())

    def shutdown(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        with contextlib.suppress(Exception):
            ray.kill(self.progress)
