"""Autoscaling from the backlog on a real Ray autoscaler: deploy/local's cluster with
``VIDEOLAKE_AUTOSCALING=1`` (a head with no CPUs whose autoscaler runs Ray's fake multi-node
provider: worker nodes are local processes it starts and stops), the CLI run against it by address."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from videolake.pipeline.query import run_sql
from tests.conftest import FAST, videolake_bin
from tests.deploy.test_local_cluster import cluster_up

pytestmark = pytest.mark.slow

IDLE_TIMEOUT_S = 10

NODES = """
import json, sys, time, ray
ray.init(logging_level="ERROR", log_to_driver=False)  # RAY_ADDRESS and the token from the environment
deadline = time.time() + float(sys.argv[1])
while True:
    nodes = [{"id": n["NodeID"], "alive": n["Alive"], "cpus": n["Resources"].get("CPU", 0)} for n in ray.nodes()]
    if time.time() > deadline or sum(n["alive"] for n in nodes) == 1:  # only the head is left
        break
    time.sleep(1)
print(json.dumps(nodes))
"""


@pytest.fixture(scope="module")
def autoscaling_cluster():
    with cluster_up("vla-", (27500, 28500), (47500, 48500), VIDEOLAKE_AUTOSCALING="1",
                    VIDEOLAKE_AUTOSCALING_MAX_NODES="2", VIDEOLAKE_IDLE_TIMEOUT_S=str(IDLE_TIMEOUT_S)) as cluster:
        yield {**cluster, "env": {**cluster["env"], **cluster["exports"]}}


def _nodes(cluster: dict, wait_s: float) -> list[dict]:
    """The cluster's nodes, dead ones included, once only the head is alive (or after ``wait_s``)."""
    done = subprocess.run([sys.executable, "-c", NODES, str(wait_s)], env=cluster["env"], capture_output=True,
                          text=True, timeout=wait_s + 120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_autoscaling_a_backlog_on_a_head_without_cpus_brings_worker_nodes_up_and_lets_them_go(
        autoscaling_cluster, tmp_path):
    from tests.media import looped_video

    head = _nodes(autoscaling_cluster, 0)
    assert [(n["alive"], n["cpus"]) for n in head] == [(True, 0)]  # nothing but a head with no CPU
    video = looped_video(tmp_path / "street.mp4", seconds=24).path  # 12 shards of 2 s
    argv = [videolake_bin(), "run", str(video), "--out", str(tmp_path / "lake"), "--imgsz", str(FAST["imgsz"]),
            "--analysis-fps", str(FAST["analysis_fps"]), "--pose", FAST["pose"], "--shard-seconds", "2", "--device", "cpu",
            "--ray-address", autoscaling_cluster["exports"]["RAY_ADDRESS"], "--max-workers", "2", "-q"]
    t0 = time.perf_counter()
    run = subprocess.run(argv, env={**autoscaling_cluster["env"], "PYTHONUNBUFFERED": "1"}, capture_output=True,
                         text=True, timeout=600)
    wall_s = time.perf_counter() - t0
    assert run.returncode == 0, run.stderr[-3000:]
    assert "waiting for the autoscaler to add nodes" in run.stderr  # said so, instead of failing

    lake = tmp_path / "lake"
    shards = run_sql(lake, "SELECT node_id, status, attempts FROM shards").to_pylist()
    assert len(shards) == 12 and all(s["status"] == "ok" and s["attempts"] == 1 for s in shards)
    used = {s["node_id"] for s in shards}
    assert used and head[0]["id"] not in used, used  # on the nodes the autoscaler added (both, unless one came late)

    t1 = time.perf_counter()
    after = _nodes(autoscaling_cluster, wait_s=120)
    gone_s = time.perf_counter() - t1
    workers = [n for n in after if n["id"] != head[0]["id"]]
    assert used <= {n["id"] for n in workers} and len(workers) == 2, after  # the 2 the backlog asked for, no more
    assert not any(n["alive"] for n in workers), after  # idle after the run: the autoscaler removed them
    print(f"autoscaling: run {wall_s:.1f} s, shards per node "
          f"{ {n[-5:]: sum(s['node_id'] == n for s in shards) for n in used} }; idle nodes gone {gone_s:.1f} s after")
