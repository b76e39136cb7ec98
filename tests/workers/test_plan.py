"""Pool sizing from the cluster's nodes: a pure function, no Ray needed."""

import pytest

from videolake.pipeline.config import RunConfig
from videolake.pipeline.errors import ConfigError
from videolake.workers.plan import NodeResources, WorkerPlan, plan_workers


def _nodes(*spec: tuple[float, float]) -> list[NodeResources]:
    return [NodeResources(f"n{i}", cpus, gpus) for i, (cpus, gpus) in enumerate(spec)]


@pytest.mark.parametrize("config, nodes, expected", [
    # one 2-core machine: one actor with both cores
    (RunConfig(), _nodes((2, 0)), WorkerPlan(1, 2.0, 0.0, 2, "cpu")),
    # more actors than cores: fractions of a CPU
    (RunConfig(workers=3), _nodes((2, 0)), WorkerPlan(3, 2 / 3, 0.0, 1, "cpu")),
    # a 16-core node: one actor per 4 cores
    (RunConfig(), _nodes((16, 0)), WorkerPlan(4, 4.0, 0.0, 4, "cpu")),
    # a head without CPUs and two 1-CPU workers: one actor per worker node, each fits its node
    (RunConfig(), _nodes((0, 0), (1, 0), (1, 0)), WorkerPlan(2, 1.0, 0.0, 1, "cpu")),
    # uneven nodes: every actor's share fits the smallest node
    (RunConfig(), _nodes((1, 0), (8, 0)), WorkerPlan(3, 1.0, 0.0, 1, "cpu")),
    (RunConfig(workers=2), _nodes((1, 0), (1, 0), (1, 0)), WorkerPlan(2, 1.0, 0.0, 1, "cpu")),
    # GPUs: one actor per GPU by default, auto picks CUDA where the cluster has GPUs
    (RunConfig(), _nodes((8, 2)), WorkerPlan(2, 1.0, 1.0, 2, "cuda", 4)),
    (RunConfig(device="cuda:0"), _nodes((8, 1)), WorkerPlan(1, 1.0, 1.0, 2, "cuda:0", 4)),
    # fractions share a GPU: 0.5 → two actors per GPU, 0.25 → four
    (RunConfig(gpus_per_worker=0.5), _nodes((8, 2)), WorkerPlan(4, 1.0, 0.5, 2, "cuda", 4)),
    (RunConfig(gpus_per_worker=0.25), _nodes((8, 1), (8, 1)), WorkerPlan(8, 1.0, 0.25, 2, "cuda", 4)),
    # a mixed cluster: only the GPU nodes count, CPU-only nodes get no GPU actor (Ray places by num_gpus)
    (RunConfig(), _nodes((4, 0), (16, 0), (8, 1), (8, 4)), WorkerPlan(5, 1.0, 1.0, 2, "cuda", 4)),
    # device cpu on a GPU cluster: CPU actors everywhere
    (RunConfig(device="cpu"), _nodes((4, 0), (8, 1)), WorkerPlan(3, 4.0, 0.0, 4, "cpu")),
    # a GPU node short of CPUs: each GPU actor reserves what the node can give
    (RunConfig(gpus_per_worker=0.25), _nodes((2, 1)), WorkerPlan(4, 0.5, 0.25, 2, "cuda", 4)),
    # more workers than GPUs: they share
    (RunConfig(device="cuda", workers=4), _nodes((8, 2)), WorkerPlan(4, 1.0, 0.5, 2, "cuda", 4)),
    # no GPU yet but an explicit count: the actors wait for the autoscaler's GPU nodes
    (RunConfig(device="cuda", workers=2), _nodes((2, 0)), WorkerPlan(2, 1.0, 1.0, 2, "cuda", 4)),
])
def test_plan_follows_the_cluster_s_nodes(config, nodes, expected):
    assert plan_workers(config, nodes) == expected


def test_decoders_set_the_calls_an_actor_runs_at_once():
    assert plan_workers(RunConfig(device="cuda", decoders=2), _nodes((8, 1))).slots == 2
    assert plan_workers(RunConfig(decoders=3), _nodes((8, 0))).slots == 3  # asked for on the CPU too
    assert plan_workers(RunConfig(), _nodes((8, 0))).slots == 1


def test_plan_refuses_what_the_cluster_cannot_run():
    with pytest.raises(ConfigError, match="needs a GPU, but the Ray cluster has none"):
        plan_workers(RunConfig(device="cuda"), _nodes((2, 0)))
    with pytest.raises(ConfigError, match="no node with a CPU"):
        plan_workers(RunConfig(device="cpu"), _nodes((0, 0)))


@pytest.mark.parametrize("config, nodes, expected", [
    # a head with no CPUs (the autoscaler adds workers): one 1-CPU actor waits for their nodes
    (RunConfig(), _nodes((0, 0)), WorkerPlan(1, 1.0, 0.0, 1, "cpu")),
    (RunConfig(workers=3), _nodes((0, 0)), WorkerPlan(3, 1.0, 0.0, 1, "cpu")),
    # CUDA on a cluster whose GPU nodes are not up yet: one actor of one GPU waits for them
    (RunConfig(device="cuda"), _nodes((0, 0), (2, 0)), WorkerPlan(1, 1.0, 1.0, 2, "cuda", 4)),
    (RunConfig(device="cuda", gpus_per_worker=0.5), _nodes((0, 0)), WorkerPlan(1, 1.0, 0.5, 2, "cuda", 4)),
    # nodes that are up already: as without an autoscaler
    (RunConfig(), _nodes((0, 0), (1, 0), (1, 0)), WorkerPlan(2, 1.0, 0.0, 1, "cpu")),
])
def test_on_an_autoscaling_cluster_a_cluster_without_room_is_waited_for(config, nodes, expected):
    assert plan_workers(config, nodes, autoscaling=True) == expected
