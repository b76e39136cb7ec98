"""The cluster path end to end: deploy/local's real cluster (a Prefect server, a Ray head and two
Ray worker nodes as separate processes), the CLI run against it by address, a worker node killed
in the middle of a run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from videolake.pipeline.query import run_sql
from tests.conftest import FAST, videolake_bin

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "local" / "cluster.py"
RUN_ARGS = ["--imgsz", str(FAST["imgsz"]), "--analysis-fps", str(FAST["analysis_fps"]), "--pose", FAST["pose"], "--shard-seconds", "2",
            "--device", "cpu", "-q"]
DETECTIONS = ("SELECT video_id, frame_index, track_id, class_name, round(confidence, 3) AS confidence, "
              "round(x1) AS x1, round(y1) AS y1, round(x2) AS x2, round(y2) AS y2 FROM detections ORDER BY ALL")
CLIPS = "SELECT video_id, clip_index, track_id, action, round(action_confidence, 3) AS c FROM clips ORDER BY ALL"


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _free_base(start: int, stop: int, span: int) -> int:
    """A port from which ``span`` ports are free (the script counts the nodes' agent ports from it)."""
    for base in range(start, stop, 50):
        if all(_bindable(base + i) for i in range(span)):
            return base
    raise RuntimeError(f"no free ports in {start}..{stop}")


@contextlib.contextmanager
def cluster_up(prefix: str, ray_ports: tuple[int, int], prefect_ports: tuple[int, int], **settings: str):
    """``deploy/local/cluster.py up`` with its own directory and ports and ``settings`` (its VIDEOLAKE_
    variables); ``down`` after the block, which must leave none of its processes behind."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    ray_port = _free_base(*ray_ports, 50)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PREFECT_"))}
    env.update(VIDEOLAKE_CLUSTER_DIR=str(directory), VIDEOLAKE_RAY_PORT=str(ray_port),
               VIDEOLAKE_RAY_CLIENT_PORT=str(ray_port + 1), VIDEOLAKE_PREFECT_PORT=str(_free_base(*prefect_ports, 1)),
               **settings)
    t0 = time.perf_counter()
    up = subprocess.run([sys.executable, str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr[-3000:]
    exports = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines()
                   if line.startswith("export "))
    state = json.loads((directory / "cluster.json").read_text())
    print(f"cluster up in {time.perf_counter() - t0:.1f} s: {exports}")
    try:
        yield {"exports": exports, "state": state, "env": env}
    finally:
        down = subprocess.run([sys.executable, str(SCRIPT), "down"], env=env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr[-2000:]
        assert not any(psutil.pid_exists(p["pid"]) and _group_alive(p["pid"]) for p in state["processes"])
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def local_cluster():
    # a mixed cluster: worker b declares a GPU (placement only; runs use cpu)
    with cluster_up("vlc-", (26500, 27500), (46500, 47500), VIDEOLAKE_WORKER_B_GPUS="1") as cluster:
        yield cluster


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _cli_env(cluster: dict, on_cluster: bool) -> dict:
    env = {**cluster["env"], "PREFECT_API_URL": cluster["exports"]["PREFECT_API_URL"], "PYTHONUNBUFFERED": "1"}
    if on_cluster:
        env.update(RAY_AUTH_MODE=cluster["exports"]["RAY_AUTH_MODE"],
                   RAY_AUTH_TOKEN_PATH=cluster["exports"]["RAY_AUTH_TOKEN_PATH"])
    return env


def _run(cluster: dict, sources: Path, lake: Path, on_cluster: bool) -> tuple[subprocess.CompletedProcess, float]:
    argv = [videolake_bin(), "run", str(sources), "--out", str(lake), *RUN_ARGS]
    if on_cluster:
        argv += ["--ray-address", cluster["exports"]["RAY_ADDRESS"]]
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=_cli_env(cluster, on_cluster), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, time.perf_counter() - t0


def _exactly_once(lake: Path) -> dict:
    """Every shard of every video committed once, no duplicated row, every shard recorded ok."""
    q = lambda sql: run_sql(lake, sql).to_pylist()[0]  # noqa: E731
    ledger = q("SELECT count(*) AS n, count(DISTINCT (video_id, content_key, shard_index)) AS d FROM ledger")
    dets = q("SELECT count(*) AS n, count(DISTINCT (video_id, content_key, shard_index, frame_index, x1, y1, x2, y2)) "
             "AS d FROM all_detections")
    clips = q("SELECT count(*) AS n, count(DISTINCT (video_id, content_key, clip_index, track_id)) AS d FROM all_clips")
    runs = q("SELECT shards_total, shards_processed, shards_failed, videos_ok, videos_failed FROM runs")
    shards = run_sql(lake, "SELECT status, attempts, node_id FROM shards").to_pylist()
    assert ledger["n"] == ledger["d"] == runs["shards_total"] == runs["shards_processed"] == len(shards)
    assert dets["n"] == dets["d"] and clips["n"] == clips["d"]
    assert runs["shards_failed"] == 0 and runs["videos_failed"] == 0
    assert all(s["status"] == "ok" for s in shards)
    return {"shards": shards, "runs": runs}


def _flow_run_state(cluster: dict, lake: Path) -> str:
    run_id = run_sql(lake, "SELECT run_id FROM runs").to_pylist()[0]["run_id"]
    url = f"{cluster['exports']['PREFECT_API_URL']}/flow_runs/{run_id}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["state"]["type"]


@pytest.fixture(scope="module")
def one_machine_lake(local_cluster, samples_dir, tmp_path_factory):
    """The same run on one machine (a local Ray started by the run), the reference lake."""
    lake = tmp_path_factory.mktemp("one-machine") / "lake"
    done, wall_s = _run(local_cluster, samples_dir, lake, on_cluster=False)
    print(f"one machine: {wall_s:.1f} s; {done.stdout.strip().splitlines()[-1]}")
    return lake


PLACEMENT = """
import json, ray
from videolake.pipeline.config import RunConfig
from videolake.workers.pool import actor_resources, cluster_nodes, plan_workers

ray.init(logging_level="ERROR", log_to_driver=False)  # RAY_ADDRESS from the environment; workers' prints stay in their logs


@ray.remote
class Probe:
    def where(self):
        context = ray.get_runtime_context()
        return context.get_node_id(), [str(g) for g in context.get_accelerator_ids().get("GPU", [])]


plan = plan_workers(RunConfig(device="cuda", gpus_per_worker=0.5), cluster_nodes())
actors = [Probe.options(**actor_resources(plan)).remote() for _ in range(plan.workers)]
gpu_node = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "videolake_worker_b" in n["Resources"])
print(json.dumps({"workers": plan.workers, "gpu_node": gpu_node, "placed": ray.get([a.where.remote() for a in actors],
                                                                                 timeout=120)}))
"""


def test_gpu_actors_land_only_on_the_gpu_node_and_share_its_gpu(local_cluster):
    env = {**_cli_env(local_cluster, True), "RAY_ADDRESS": local_cluster["exports"]["RAY_ADDRESS"]}
    done = subprocess.run([sys.executable, "-c", PLACEMENT], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["workers"] == 2  # one declared GPU at 0.5 each
    assert [tuple(p) for p in found["placed"]] == [(found["gpu_node"], ["0"])] * 2  # never on the CPU-only worker a


def test_the_flow_runs_on_the_cluster_s_nodes_and_fills_the_lake_as_one_machine_does(local_cluster, one_machine_lake,
                                                                                        samples_dir, tmp_path):
    done, wall_s = _run(local_cluster, samples_dir, tmp_path / "cluster", on_cluster=True)

    outcome = _exactly_once(tmp_path / "cluster")
    nodes = {s["node_id"] for s in outcome["shards"]}
    assert len(nodes) == 2, outcome["shards"]  # the shards ran on both worker nodes (the head has no CPU)
    assert outcome["runs"]["shards_total"] >= 8  # enough 2 s shards to spread
    for sql in (DETECTIONS, CLIPS):
        assert run_sql(tmp_path / "cluster", sql).to_pylist() == run_sql(one_machine_lake, sql).to_pylist()
    assert _flow_run_state(local_cluster, tmp_path / "cluster") == "COMPLETED"  # the cluster's Prefect server ran it
    spread = {n[:8]: sum(s["node_id"] == n for s in outcome["shards"]) for n in nodes}
    print(f"cluster: {wall_s:.1f} s, {outcome['runs']['shards_total']} shards over nodes {spread}; "
          f"{done.stdout.strip().splitlines()[-1]}")


GROWTH = """
import json, sys, time, ray
from videolake.pipeline.config import RunConfig
from videolake.pipeline.models import resolve_actions, resolve_detector
from videolake.workers.pool import WorkerPool

ray.init(logging_level="ERROR", log_to_driver=False)  # RAY_ADDRESS from the environment; workers' prints stay in their logs
pool = WorkerPool(RunConfig(imgsz=320, analysis_fps=4.0, device="cpu"), resolve_detector(), resolve_actions())
deadline = time.time() + 240
while len(pool.ready()) < len(pool.actors) and time.time() < deadline:
    time.sleep(1)
print(json.dumps({"actors": len(pool.actors), "ready": len(pool.ready())}), flush=True)
sys.stdin.readline()  # the test added a node
deadline = time.time() + 240
while (len(pool.actors) < 3 or len(pool.ready()) < 3) and time.time() < deadline:
    time.sleep(1)
print(json.dumps({"actors": len(pool.actors), "nodes": sorted({d["node_id"] for d in pool.ready()})}), flush=True)
pool.shutdown()
"""


def test_the_pool_grows_when_a_node_joins_the_cluster(local_cluster, tmp_path):
    env = {**_cli_env(local_cluster, True), "RAY_ADDRESS": local_cluster["exports"]["RAY_ADDRESS"]}
    script = subprocess.Popen([sys.executable, "-c", GROWTH], env=env, cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    node = None
    try:
        line = script.stdout.readline()
        assert line.startswith("{"), f"the pool script printed {line!r}: {script.stderr.read()[-3000:]}"
        before = json.loads(line)
        assert before == {"actors": 2, "ready": 2}  # one actor per 1-CPU worker node
        # What an autoscaler does: a third worker node joins (1 CPU, agent ports after the script's nodes).
        port = int(local_cluster["env"]["VIDEOLAKE_RAY_PORT"])
        with open(tmp_path / "worker-c.log", "w") as log:
            node = subprocess.Popen(
                [str(Path(sys.executable).parent / "ray"), "start", "--block", "--disable-usage-stats",
                 f"--address=127.0.0.1:{port}", "--num-cpus=1", "--num-gpus=0", "--object-store-memory=209715200",
                 f"--dashboard-agent-listen-port={port + 40}", f"--dashboard-agent-grpc-port={port + 41}",
                 f"--metrics-export-port={port + 42}", f"--runtime-env-agent-port={port + 43}"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        script.stdin.write("go\n")
        script.stdin.flush()
        after = json.loads(script.stdout.readline() or "{}")
        assert after.get("actors") == 3 and len(after["nodes"]) == 3, (after, script.stderr.read()[-2000:])
        assert script.wait(timeout=60) == 0
    finally:
        if script.poll() is None:
            script.kill()
        if node is not None:
            _kill_node(node.pid, _descendants(node.pid))
            node.wait(timeout=30)


# Last: it kills worker b.
def test_a_worker_node_killed_mid_run_costs_a_retry_and_the_run_completes_exactly_once(local_cluster, one_machine_lake,
                                                                                         samples_dir, tmp_path):
    reference = one_machine_lake
    victim = next(p for p in local_cluster["state"]["processes"] if p["name"] == "ray-worker-b")
    lake = tmp_path / "lake"
    argv = [videolake_bin(), "run", str(samples_dir), "--out", str(lake), *RUN_ARGS,
            "--ray-address", local_cluster["exports"]["RAY_ADDRESS"]]
    t0 = time.perf_counter()
    run = subprocess.Popen(argv, env=_cli_env(local_cluster, True), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    killed_at = None
    deadline = time.time() + 300
    while killed_at is None and run.poll() is None and time.time() < deadline:
        node = _descendants(victim["pid"])
        busy = [p for p in node if "ray::VideoWorker.process" in " ".join(_cmdline(p))]
        if busy and list(lake.glob("_staging/ledger/*/*/*.parquet")):  # shards committed, one in flight on the victim node
            _kill_node(victim["pid"], node)
            killed_at = len(list(lake.glob("_staging/ledger/*/*/*.parquet")))
        time.sleep(0.05)
    stdout, stderr = run.communicate(timeout=600)
    wall_s = time.perf_counter() - t0
    assert killed_at is not None, f"the victim node never ran a shard: {stderr[-2000:]}"
    assert run.returncode == 0, stderr[-3000:]
    outcome = _exactly_once(lake)
    attempts = sorted(s["attempts"] for s in outcome["shards"])
    assert attempts[-1] == 2 and attempts.count(2) <= 2, attempts  # the shard(s) on the lost node ran again
    for sql in (DETECTIONS, CLIPS):
        assert run_sql(lake, sql).to_pylist() == run_sql(reference, sql).to_pylist()
    lines = [line for line in stdout.splitlines() if line.startswith(("shards:", "wall time:"))]
    print(f"node killed after {killed_at} shard(s) committed; attempts {attempts}; {'; '.join(lines)}; command {wall_s:.1f} s")


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _kill_node(pgid: int, processes: list[psutil.Process]) -> None:
    """SIGKILL a Ray node: its process group (ray start, raylet, agents) and its worker processes,
    which Ray starts in process groups of their own."""
    os.killpg(pgid, signal.SIGKILL)
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass

