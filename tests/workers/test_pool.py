"""The actor pool on a real local Ray."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from videolake.pipeline.analyze import ShardJob
from videolake.pipeline.config import RunConfig
from videolake.pipeline.decode import probe
from videolake.pipeline.models import resolve_actions, resolve_detector
from videolake.pipeline.shards import Shard
from videolake.pipeline.sources import video_id_for
from tests.conftest import FAST

pytestmark = pytest.mark.slow


def test_plan_uses_the_cluster_s_cpus(ray_local):
    from videolake.workers.pool import cluster_nodes, plan_workers

    nodes = cluster_nodes()
    assert [(n.cpus, n.gpus) for n in nodes] == [(2.0, 0.0)]
    plan = plan_workers(RunConfig(), nodes)
    assert (plan.workers, plan.threads, plan.device, plan.num_gpus) == (1, 2, "cpu", 0)
    from videolake.pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a GPU"):
        plan_workers(RunConfig(device="cuda"), nodes)


def test_a_worker_killed_mid_video_costs_that_call_and_comes_back(ray_local, samples_dir, tmp_path):
    import ray

    from videolake.workers.pool import WorkerLost, WorkerPool

    pool = WorkerPool(RunConfig(**FAST, workers=1), resolve_detector(), resolve_actions())
    try:
        info = pool.wait_ready()
        assert info[0]["device"] == "cpu" and info[0]["classes"] == {0: "Normal", 1: "Fall"}
        assert info[0]["node_id"] == ray.get_runtime_context().get_node_id() and info[0]["gpu_ids"] == []
        path = samples_dir / "bikes.mp4"
        job = ShardJob(video_id_for(str(path), "ck"), "ck", probe(path), Shard(0, 0.0, float("inf"), 0.0, 0, 0.0),
                       str(tmp_path), "r", "h")
        pid = ray.get(pool.actors[0].pid.remote())
        with ThreadPoolExecutor(1) as ex:
            future = ex.submit(pool.process, job)
            deadline = time.time() + 120
            while pool.frames_done() == 0 and time.time() < deadline:
                time.sleep(0.2)
            assert pool.frames_done() > 0, "the worker never started the video"
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(WorkerLost, match="worker died while analysing"):
                future.result(timeout=120)
        assert not list(tmp_path.rglob("*.parquet"))  # the half-done video left no files
        result = pool.process(job)  # Ray restarted the actor with its models
        assert result.status == "ok" and result.frames_analyzed == 40
        assert result.node_id == info[0]["node_id"] and result.node_ip and result.gpu_ids == []
        assert ray.get(pool.actors[0].pid.remote()) != pid
    finally:
        pool.shutdown()


def test_a_shard_past_its_time_limit_is_stopped_and_the_worker_restarts(ray_local, samples_dir, tmp_path):
    from videolake.workers.pool import ShardTimeout, WorkerPool

    pool = WorkerPool(RunConfig(**FAST, workers=1), resolve_detector(), resolve_actions())
    try:
        pool.wait_ready()
        path = samples_dir / "bikes.mp4"
        job = ShardJob(video_id_for(str(path), "ck"), "ck", probe(path), Shard(0, 0.0, float("inf"), 0.0, 0, 0.0),
                       str(tmp_path), "r", "h")
        with pytest.raises(ShardTimeout, match="ran past the 0.05 s limit"):  # 40 frames: never done in 50 ms
            pool.process(job, timeout_s=0.05)
        assert pool.process(job).status == "ok"  # the restarted actor takes the next shard
    finally:
        pool.shutdown()


@pytest.mark.needs_cuda
def test_gpu_actors_share_a_gpu_half_each_and_record_it(ray_local, samples_dir, tmp_path):
    import ray

    from videolake.workers.pool import WorkerPool

    pool = WorkerPool(RunConfig(**FAST, device="cuda", gpus_per_worker=0.5), resolve_detector(), resolve_actions())
    try:
        assert pool.plan.num_gpus == 0.5 and pool.plan.workers == 2 * int(ray.cluster_resources()["GPU"])
        pool.wait_ready()
        described = ray.get([a.describe.remote() for a in pool.actors], timeout=300)
        assert all(d["device"].startswith("cuda") and len(d["gpu_ids"]) == 1 for d in described)
        path = samples_dir / "bikes.mp4"
        job = ShardJob(video_id_for(str(path), "ck"), "ck", probe(path), Shard(0, 0.0, float("inf"), 0.0, 0, 0.0),
                       str(tmp_path), "r", "h")
        result = pool.process(job)
        assert result.status == "ok" and len(result.gpu_ids) == 1 and result.node_id
    finally:
        pool.shutdown()


def test_a_run_starts_its_own_ray_even_where_a_killed_ray_start_left_its_address_behind():
    """`ray start --head` killed without `ray stop` leaves ``ray_current_cluster`` in Ray's temp dir;
    a plain ``ray.init()`` would try to join that dead address and fail the run."""
    temp = tempfile.mkdtemp(prefix="vlray", dir="/tmp")  # Ray's socket paths under it must stay short
    try:
        Path(temp, "ray").mkdir()
        Path(temp, "ray", "ray_current_cluster").write_text("127.0.0.1:9")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"RAY_TMPDIR": temp}
        script = ("import ray\nfrom workers.pool import ray_session\n"
                  "with ray_session() as how:\n    print(how, int(ray.cluster_resources()['CPU']))")
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                             cwd=Path(__file__).resolve().parents[2])
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.split() == ["local", str(os.cpu_count())]
    finally:
        shutil.rmtree(temp, ignore_errors=True)
