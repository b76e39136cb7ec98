"""How many Ray actors, and what each one reserves: pure functions of the config and the nodes.

CPU actors share a node's cores (one actor per 4 cores); GPU actors reserve a GPU share, so Ray
places them on GPU nodes only; a cluster with no room yet (a head with no CPUs, GPU nodes still to
come) is planned as one actor that waits for the autoscaler, where the run joined a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from videolake.pipeline.config import RunConfig
from videolake.pipeline.errors import ConfigError

__all__ = ["NodeResources", "WorkerPlan", "plan_workers", "actor_resources", "bundle", "fits", "needs"]

_THREADS_PER_CPU_WORKER = 4  # CPU actors of up to 4 threads: one actor per 4 cores of a node


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
    slots: int = 1  # calls one actor runs at once: shards decoding side by side (``RunConfig.decoders_for``)


def plan_workers(config: RunConfig, nodes: Sequence[NodeResources], autoscaling: bool = False) -> WorkerPlan:
    """How many actors, with which resources, from the config and the nodes' resources.

    CPU: one actor per 4 cores of each node (at least one per node with a CPU); each reserves
    a share of CPUs that fits on every node, so actors spread over the nodes. ``--workers``
    overrides the count (fractions of a CPU allowed). CUDA: one actor per GPU by default;
    ``gpus_per_worker`` below 1 puts several actors on a GPU (0.5: two, 0.25: four). An actor
    reserving a GPU is only placed on a node that has one. With ``autoscaling`` (a joined
    cluster), a cluster with no room yet (a head with no CPUs or GPUs) is normal: the plan is
    one actor of one CPU (or one GPU share), which waits for the autoscaler's nodes; otherwise
    it is an error. An explicit ``--workers`` always plans that many, placed or waiting.
    """
    total_gpus = sum(n.gpus for n in nodes)
    device = config.device if config.device != "auto" else ("cuda" if total_gpus >= 1 else "cpu")
    if device.startswith("cuda"):
        return _plan_gpu(config, nodes, device, autoscaling)
    cpus = [n.cpus for n in nodes if n.cpus >= 1]
    if not cpus:
        if not (config.workers or autoscaling):
            raise ConfigError("the Ray cluster has no node with a CPU; give --workers to wait for the autoscaler")
        return WorkerPlan(config.workers or 1, num_cpus=1.0, num_gpus=0.0, threads=1, device="cpu",
                          slots=config.decoders_for("cpu"))
    per_node = [max(1, int(c // _THREADS_PER_CPU_WORKER)) for c in cpus]
    workers = config.workers or sum(per_node)
    share = min(sum(cpus) / workers, min(c / n for c, n in zip(cpus, per_node)))
    return WorkerPlan(workers, num_cpus=share, num_gpus=0.0, threads=max(1, int(share)), device="cpu",
                      slots=config.decoders_for("cpu"))


def _plan_gpu(config: RunConfig, nodes: Sequence[NodeResources], device: str, autoscaling: bool) -> WorkerPlan:
    total_gpus = sum(n.gpus for n in nodes)
    if config.gpus_per_worker:
        share = config.gpus_per_worker
    elif config.workers and total_gpus:
        share = min(1.0, total_gpus / config.workers)
    else:
        share = 1.0
    gpu_nodes = [(n, int(n.gpus / share + 1e-9)) for n in nodes if n.gpus > 0]
    workers = config.workers or sum(count for _, count in gpu_nodes) or (1 if autoscaling else 0)
    if workers == 0:
        raise ConfigError(f"device {config.device} needs a GPU, but the Ray cluster has none "
                          "(give --workers to wait for the autoscaler's GPU nodes)")
    cpu_shares = [n.cpus / count for n, count in gpu_nodes if count and n.cpus > 0]
    num_cpus = min([1.0, *cpu_shares])
    return WorkerPlan(workers, num_cpus=num_cpus, num_gpus=share, threads=2, device=device,
                      slots=config.decoders_for(device))


def actor_resources(plan: WorkerPlan) -> dict:
    """Ray options of each actor: its CPU and GPU share, spread over the nodes, and the calls it runs
    at once. An actor with a GPU share is only ever placed on a node with a GPU; fractions pack
    actors onto one GPU."""
    return {"num_cpus": plan.num_cpus, "num_gpus": plan.num_gpus, "scheduling_strategy": "SPREAD",
            "max_concurrency": plan.slots}


def bundle(plan: WorkerPlan) -> dict[str, float]:
    """One actor's resources as an autoscaler bundle."""
    return {k: v for k, v in (("CPU", plan.num_cpus), ("GPU", plan.num_gpus)) if v > 0}


def fits(plan: WorkerPlan, node: NodeResources) -> bool:
    """Whether ``node`` has room for one actor of ``plan``, counting all its resources."""
    return node.cpus >= plan.num_cpus and node.gpus >= plan.num_gpus


def needs(plan: WorkerPlan) -> str:
    return " and ".join(f"{v:g} {k}" for k, v in bundle(plan).items())
