"""Starting or joining Ray, sizing and placing the actor pool, handing shards to ready actors.

The pool follows the cluster: ``plan_workers`` sizes it from the alive nodes' resources (a
pure function), actors are spread over the nodes, GPU actors reserve a (possibly fractional)
GPU so Ray places them on GPU nodes only, and a watcher thread admits actors as they become
ready, takes back actors that Ray restarts (a crash, a lost node) and adds actors when the
cluster grows (the autoscaler added nodes). A shard only ever goes to an actor that is ready.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator, Sequence

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError, WorkerCrashedError

from videolake.pipeline.analyze import ShardJob, ShardResult
from videolake.pipeline.config import RunConfig
from videolake.pipeline.errors import ConfigError, ModelError, TimedOut, VideolakeError
from videolake.pipeline.models import ModelInfo
from videolake.pipeline.storage import forwarded_env
from videolake.workers.actor import ProgressCounter, VideoWorker
from videolake.workers.local_ray import start_local_ray, stop_local_ray

__all__ = ["WorkerPool", "WorkerLost", "ShardTimeout", "ray_session", "plan_workers", "WorkerPlan",
           "NodeResources", "cluster_nodes", "actor_resources"]

_LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024
_THREADS_PER_CPU_WORKER = 4  # CPU actors of up to 4 threads: one actor per 4 cores of a node
_SHARDS_IN_FLIGHT_PER_WORKER = 2  # one running, one queued: the next shard is ready when an actor frees up
_GROW_CHECK_S = 10.0
_HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray gives the head node this resource


class WorkerLost(VideolakeError):
    """The actor running a shard died; the shard can be retried on another or a restarted actor."""


class ShardTimeout(TimedOut):
    """A shard ran past its time limit; its actor was restarted to stop it."""


@dataclass(frozen=True)
class NodeResources:
    """What one alive Ray node offers."""

    node_id: str
    cpus: float
    gpus: float


@dataclass(frozen=True)
class WorkerPlan:
    """How many actors, and what each one reserves."""

    workers: int
    num_cpus: float
    num_gpus: float
    threads: int
    device: str


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[str]:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start a local Ray on loopback for the block."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        yield "existing"
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    else:
        start_local_ray(  # a Ray of its own on loopback, even where `ray start` left a cluster (or a stale address) behind
            num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
            object_store_memory=_LOCAL_OBJECT_STORE_BYTES, logging_level=logging.ERROR,
        )
    try:
        yield address or "local"
    finally:
        if address:
            ray.shutdown()
        else:
            stop_local_ray()


def cluster_nodes() -> list[NodeResources]:
    """The alive nodes of the connected Ray cluster and their CPUs and GPUs."""
    return [NodeResources(n["NodeID"], float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
            for n in ray.nodes() if n.get("Alive")]


def plan_workers(config: RunConfig, nodes: Sequence[NodeResources]) -> WorkerPlan:
    """How many actors, with which resources, from the config and the nodes' resources.

    CPU: one actor per 4 cores of each node (at least one per node with a CPU); each reserves
    a share of CPUs that fits on every node, so actors spread over the nodes. ``--workers``
    overrides the count (fractions of a CPU allowed). CUDA: one actor per GPU by default;
    ``gpus_per_worker`` below 1 puts several actors on a GPU (0.5: two, 0.25: four). An actor
    reserving a GPU is only placed on a node that has one. With no GPU in the cluster yet,
    an explicit ``--workers`` still plans GPU actors: they wait for the autoscaler's GPU nodes.
    """
    total_gpus = sum(n.gpus for n in nodes)
    device = config.device if config.device != "auto" else ("cuda" if total_gpus >= 1 else "cpu")
    if device.startswith("cuda"):
        return _plan_gpu(config, nodes, device)
    cpus = [n.cpus for n in nodes if n.cpus >= 1]
    if not cpus:
        if not config.workers:
            raise ConfigError("the Ray cluster has no node with a CPU; give --workers to wait for the autoscaler")
        return WorkerPlan(config.workers, num_cpus=1.0, num_gpus=0.0, threads=1, device="cpu")
    per_node = [max(1, int(c // _THREADS_PER_CPU_WORKER)) for c in cpus]
    workers = config.workers or sum(per_node)
    share = min(sum(cpus) / workers, min(c / n for c, n in zip(cpus, per_node)))
    return WorkerPlan(workers, num_cpus=share, num_gpus=0.0, threads=max(1, int(share)), device="cpu")


def _plan_gpu(config: RunConfig, nodes: Sequence[NodeResources], device: str) -> WorkerPlan:
    total_gpus = sum(n.gpus for n in nodes)
    if config.gpus_per_worker:
        share = config.gpus_per_worker
    elif config.workers and total_gpus:
        share = min(1.0, total_gpus / config.workers)
    else:
        share = 1.0
    gpu_nodes = [(n, int(n.gpus / share + 1e-9)) for n in nodes if n.gpus > 0]
    workers = config.workers or sum(count for _, count in gpu_nodes)
    if workers == 0:
        raise ConfigError(f"device {config.device} needs a GPU, but the Ray cluster has none "
                          "(give --workers to wait for the autoscaler's GPU nodes)")
    cpu_shares = [n.cpus / count for n, count in gpu_nodes if count and n.cpus > 0]
    num_cpus = min([1.0, *cpu_shares])
    return WorkerPlan(workers, num_cpus=num_cpus, num_gpus=share, threads=2, device=device)


def actor_resources(plan: WorkerPlan) -> dict:
    """Ray options of each actor: its CPU and GPU share, spread over the nodes. An actor with a GPU
    share is only ever placed on a node with a GPU; fractions pack actors onto one GPU."""
    return {"num_cpus": plan.num_cpus, "num_gpus": plan.num_gpus, "scheduling_strategy": "SPREAD"}


def _cause(exc: BaseException) -> BaseException | None:
    """The ``VideolakeError`` behind a Ray error from an actor's constructor, if any."""
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, VideolakeError):
        return exc.cause
    if isinstance(exc, RayActorError) and exc.actor_init_failed:
        return ModelError(f"a worker could not start: {str(exc).splitlines()[-1]}")
    return None


class WorkerPool:
    """``VideoWorker`` actors sized to the cluster; ``process`` blocks until an actor is ready.

    ``prestart`` starts a pool ahead of the flow that will use it (its actors load their models
    meanwhile); the flow's ``claim`` with the same settings takes it over, or starts a new one.
    """

    _prestarted: dict[tuple, WorkerPool] = {}

    def __init__(self, config: RunConfig, detector: ModelInfo, actions: ModelInfo) -> None:
        self.config = config
        self.plan = plan_workers(config, cluster_nodes())
        self._settings = {**config.to_dict(), "device": self.plan.device}
        self._models = (detector.path, actions.path)
        self._progress_name = f"videolake-progress-{uuid.uuid4().hex}"
        # On the head node: a lost worker node must not take the progress counter with it.
        self.progress = ProgressCounter.options(name=self._progress_name,
                                                resources={_HEAD_NODE_RESOURCE: 0.001}).remote()
        self.actors: list = []
        self._idle: queue.Queue = queue.Queue()  # ready actors
        self._starting: dict = {}  # actor → its pending describe() call; such an actor takes no shard
        self._described: dict = {}  # ready actor → its describe() answer (worker, node, GPUs, device)
        self._fatal: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Condition(self._lock)
        self._add_actors(self.plan.workers, self.plan)
        self._watcher = threading.Thread(target=self._watch, name="videolake-pool", daemon=True)
        self._watcher.start()

    @staticmethod
    def _key(config: RunConfig, detector: ModelInfo, actions: ModelInfo) -> tuple:
        return json.dumps(config.to_dict(), sort_keys=True, default=str), detector.path, actions.path

    @classmethod
    def prestart(cls, config: RunConfig, detector: ModelInfo, actions: ModelInfo) -> WorkerPool:
        pool = cls(config, detector, actions)
        cls._prestarted[cls._key(config, detector, actions)] = pool
        return pool

    @classmethod
    def claim(cls, config: RunConfig, detector: ModelInfo, actions: ModelInfo) -> WorkerPool:
        """The pool prestarted with these settings in this Ray session, or a new one."""
        pool = cls._prestarted.pop(cls._key(config, detector, actions), None)
        return pool if pool is not None and ray.is_initialized() else cls(config, detector, actions)

    @classmethod
    def discard_prestarted(cls) -> None:
        """Shut down the prestarted pools nobody claimed (the flow failed before it started)."""
        while cls._prestarted:
            cls._prestarted.popitem()[1].shutdown()

    @property
    def max_in_flight(self) -> int:
        """Shards the flow may have submitted at once: a fixed number per actor, plus room for probes."""
        return _SHARDS_IN_FLIGHT_PER_WORKER * len(self.actors) + 2

    def wait_ready(self, timeout_s: float | None = None) -> list[dict]:
        """Block until at least one actor loaded its models; a model that cannot load raises here."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._changed:
            while not self._described and self._fatal is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise WorkerLost(f"no worker became ready within {timeout_s:.0f} s")
                self._changed.wait(timeout=left if left is not None else 1.0)
            if self._fatal is not None:
                raise self._fatal
            return list(self._described.values())

    def ready(self) -> list[dict]:
        """What the actors taking shards now report: worker name, node, GPUs, device."""
        with self._lock:
            return list(self._described.values())

    def process(self, job: ShardJob, timeout_s: float | None = None) -> ShardResult:
        actor = self._idle.get()
        back_to_idle = True
        try:
            return ray.get(actor.process.remote(job), timeout=timeout_s)
        except GetTimeoutError:
            ray.kill(actor, no_restart=False)  # stops the runaway call; Ray restarts the actor
            back_to_idle = False
            raise ShardTimeout(f"shard {job.shard.index} of {job.info.uri} ran past the {timeout_s:g} s limit") from None
        except (RayActorError, ActorUnavailableError, WorkerCrashedError) as exc:
            back_to_idle = False  # Ray restarts it (elsewhere if its node is gone); it rejoins once ready
            raise WorkerLost(f"worker died while analysing {job.info.uri}: {type(exc).__name__}") from None
        finally:
            if back_to_idle:
                self._idle.put(actor)
            else:
                with self._lock:
                    self._described.pop(actor, None)
                    self._starting[actor] = actor.describe.remote()

    def frames_done(self) -> int:
        return ray.get(self.progress.frames.remote())

    def shutdown(self) -> None:
        self._stop.set()
        self._watcher.join(timeout=5)
        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        with contextlib.suppress(Exception):
            ray.kill(self.progress)

    def _add_actors(self, count: int, plan: WorkerPlan) -> None:
        for _ in range(count):
            actor = VideoWorker.options(**actor_resources(plan)).remote(
                self._settings, *self._models, plan.threads, self._progress_name, storage_env=forwarded_env())
            with self._lock:
                self.actors.append(actor)
                self._starting[actor] = actor.describe.remote()

    def _watch(self) -> None:
        """Admit actors whose constructor finished; grow the pool when the cluster grows."""
        next_grow = time.monotonic() + _GROW_CHECK_S
        while not self._stop.is_set():
            with self._lock:
                calls = {ref: actor for actor, ref in self._starting.items()}
            if calls:
                done, _ = ray.wait(list(calls), num_returns=len(calls), timeout=1.0)
                for ref in done:
                    self._admit(calls[ref], ref)
            else:
                self._stop.wait(1.0)
            if self.config.workers is None and time.monotonic() >= next_grow:
                next_grow = time.monotonic() + _GROW_CHECK_S
                with contextlib.suppress(Exception):  # a cluster that cannot answer now is asked again later
                    self._grow()

    def _admit(self, actor, ref) -> None:  # noqa: ANN001 - a VideoWorker handle and its describe() call
        try:
            info = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - sorted below: a broken model, or a restart in progress
            fatal = _cause(exc)
            with self._changed:
                if fatal is not None:
                    self._fatal = fatal
                    self._starting.pop(actor, None)
                    self._changed.notify_all()
                    return
            time.sleep(0.5)  # Ray is restarting it (a crash, a lost node): ask again
            with self._lock:
                if not self._stop.is_set():
                    self._starting[actor] = actor.describe.remote()
            return
        with self._changed:
            self._starting.pop(actor, None)
            self._described[actor] = info
            self._changed.notify_all()
        self._idle.put(actor)

    def _grow(self) -> None:
        plan = plan_workers(self.config, cluster_nodes())
        missing = plan.workers - len(self.actors)
        if missing > 0 and plan.device == self.plan.device:
            self._add_actors(missing, plan)
