"""The actor pool on a real local Ray."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
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

    from videolake.pipeline.errors import WorkerLost
    from videolake.workers.pool import WorkerPool

    pool = WorkerPool(RunConfig(**FAST, workers=1), resolve_detector(), resolve_actions())
    try:
        info = pool.wait_ready()
        assert info[0]["device"] == "cpu" and info[0]["classes"] == {0: "Normal", 1: "Fall"}
        assert info[0]["node_id"] == ray.get_runtime_context().get_node_id() and info[0]["gpu_ids"] == []
        path = samples_dir / "bikes.mp4"
        job = ShardJob(video_id_for(str(path), "ck"), "ck", probe(path), Shard(0, 0.0, float("inf"), 0.0, 0, 0.0),
                       str(tmp_path), "r", "h")
        pid = ray.get(pool.actors[0].pid.remote())
        future = pool.submit_shard(job)
        deadline = time.time() + 120
        while pool.frames_done() == 0 and time.time() < deadline:
            time.sleep(0.2)
        assert pool.frames_done() > 0, "the worker never started the video"
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerLost, match="worker died while shard 0 of"):
            future.result(timeout=120)
        assert not list(tmp_path.rglob("*.parquet"))  # the half-done video left no files
        result = pool.submit_shard(job).result(timeout=300)  # Ray restarted the actor with its models
        assert result.status == "ok" and result.frames_analyzed == 40
        assert result.node_id == info[0]["node_id"] and result.node_ip and result.gpu_ids == []
        assert ray.get(pool.actors[0].pid.remote()) != pid
    finally:
        pool.shutdown()


def test_a_shard_past_its_time_limit_is_stopped_and_the_worker_restarts(ray_local, samples_dir, tmp_path):
    from videolake.pipeline.errors import ShardTimeout
    from videolake.workers.pool import WorkerPool

    pool = WorkerPool(RunConfig(**FAST, workers=1), resolve_detector(), resolve_actions())
    try:
        pool.wait_ready()
        path = samples_dir / "bikes.mp4"
        job = ShardJob(video_id_for(str(path), "ck"), "ck", probe(path), Shard(0, 0.0, float("inf"), 0.0, 0, 0.0),
                       str(tmp_path), "r", "h")
        with pytest.raises(ShardTimeout, match="ran past the 0.05 s limit"):  # 40 frames: never done in 50 ms
            pool.submit_shard(job, timeout_s=0.05).result(timeout=300)
        assert pool.submit_shard(job).result(timeout=300).status == "ok"  # the restarted actor takes the next shard
    finally:
        pool.shutdown()


def test_a_probe_on_a_worker_gives_what_a_local_probe_gives_its_typed_errors_and_its_time_limit(
        ray_local, samples_dir, corpus, tmp_path):
    import ray

    from videolake.pipeline.errors import DecodeError, SourceError, TimedOut
    from videolake.workers.pool import WorkerPool

    from tests.media import all_intra

    pool = WorkerPool(RunConfig(**FAST, workers=1), resolve_detector(), resolve_actions())
    try:
        path = str(samples_dir / "bikes.mp4")
        assert pool.submit_probe(path, 8192 * 8192, 3600.0, timeout_s=120).result(timeout=300) == probe(path)
        # the library's errors, not Ray's wrappers
        with pytest.raises(DecodeError, match="exceeds the limit"):
            pool.submit_probe(path, 640 * 200, 3600.0, timeout_s=120).result(timeout=300)
        with pytest.raises(DecodeError, match="not a readable video"):
            pool.submit_probe(str(corpus["text"].path), 8192 * 8192, 3600.0).result(timeout=300)
        with pytest.raises(SourceError, match="file is empty"):
            pool.submit_probe(str(corpus["zero_bytes"].path), 8192 * 8192, 3600.0).result(timeout=300)

        asset = all_intra(tmp_path / "intra.mkv", seconds=3600)  # 90,000 packets to demux: far more than 1 ms
        pid = ray.get(pool.actors[0].pid.remote())
        with pytest.raises(TimedOut, match="probing .* ran past the 0.001 s limit"):
            pool.submit_probe(str(asset.path), 8192 * 8192, 7200.0, timeout_s=0.001).result(timeout=300)
        # the worker running the stopped probe was ended; Ray restarted it and it takes the next probe
        info = pool.submit_probe(str(asset.path), 8192 * 8192, 7200.0, timeout_s=120).result(timeout=300)
        assert info.duration_s == pytest.approx(3600, abs=0.1)
        assert ray.get(pool.actors[0].pid.remote()) != pid
    finally:
        pool.shutdown()


def test_a_video_s_probe_shards_and_finalize_run_on_the_workers_and_the_pool_follows_the_backlog(
        ray_local, samples_dir, tmp_path):
    from videolake.pipeline.lake import Lake
    from videolake.pipeline.shards import plan_shards
    from videolake.pipeline.query import run_sql
    from videolake.pipeline.sources import VideoSource
    from videolake.workers.actor import VideoToFinalize
    from videolake.workers.pool import WorkerPool

    lake = Lake.open_or_create(tmp_path / "lake")
    # max 2 actors of the node's 2 CPUs each: the second one cannot be placed on this 1-node Ray
    pool = WorkerPool(RunConfig(**FAST, max_workers=2), resolve_detector(), resolve_actions())
    try:
        path = str(samples_dir / "bikes.mp4")
        info = pool.submit_probe(path, 8192 * 8192, 3600.0).result(timeout=300)
        assert info == probe(path)  # the driver only plans: the worker read the packets

        shards = plan_shards(info, 2.0, 2.0)
        source = VideoSource(path, video_id_for(path, "ck"), os.path.getsize(path), "ck")
        vid = source.video_id
        jobs = [ShardJob(vid, "ck", info.without_keyframes(), shard, lake.url, "r", "h") for shard in shards]
        pool.scale_to(len(jobs))
        assert len(pool.actors) == 2  # asked for what the backlog needs, up to max_workers
        results = [f.result(timeout=300) for f in [pool.submit_shard(job) for job in jobs]]
        assert [r.status for r in results] == ["ok"] * len(shards) and len(shards) >= 3
        assert len({r.worker for r in results}) == 1  # the second actor never found room on this node
        rows = [{"video_id": vid, "content_key": "ck", "shard_index": r.shard_index, "status": "ok", "attempts": 1,
                 "worker": r.worker, "run_id": "r"} for r in results]
        outcome, commit = pool.submit_finalize(VideoToFinalize(lake.url, "h", "r", source, info, shards, {}, 1.0, rows,
                                                               None)).result(timeout=300)
        assert outcome.status == "ok" and outcome.n_tracks > 0 and commit.video_id == vid
        assert not (tmp_path / "lake" / "videos").exists() or not run_sql(lake, "FROM videos").num_rows  # stitched, not published
        assert pool.submit_publish(lake.url, [commit]).result(timeout=300) is None
        assert outcome.frames_analyzed == sum(r.frames_analyzed for r in results)
        assert run_sql(lake, "SELECT count(*) AS n FROM shards").to_pylist() == [{"n": len(shards)}]
        assert run_sql(lake, "SELECT status FROM videos").to_pylist() == [{"status": "ok"}]
        assert not list((tmp_path / "lake" / "_staging").rglob("*.parquet"))  # published, then the staging removed

        pool.scale_to(1)  # the backlog shrank: the actor still waiting for room goes first
        assert len(pool.actors) == 1 and len(pool.ready()) == 1
    finally:
        pool.shutdown()


def test_an_actor_running_shards_side_by_side_writes_what_it_writes_one_at_a_time(ray_local, samples_dir, tmp_path):
    """``decoders=2``: two shards at once in one actor, each with its own decoder thread and detector."""
    from videolake.pipeline.shards import plan_shards
    from videolake.pipeline.storage import read_parquet
    from videolake.workers.pool import WorkerPool

    jobs = {}
    for name in ("bikes.mp4", "carphone_pristine.mp4"):
        info = probe(samples_dir / name)
        jobs[name] = [(info.without_keyframes(), shard) for shard in plan_shards(info, 4.0, 2.0)]

    def job(name: str, info, shard: Shard, lake: str) -> ShardJob:  # noqa: ANN001
        return ShardJob(video_id_for(name, "ck"), "ck", info, shard, str(tmp_path / lake), "r", "h")

    pool = WorkerPool(RunConfig(**FAST, workers=1, decoders=2), resolve_detector(), resolve_actions())
    try:
        assert pool.plan.slots == 2 and pool.max_in_flight == 2 + 1 + 2
        side_by_side = [pool.submit_shard(job(n, info, shard, "a")) for n, shards in jobs.items() for info, shard in shards]
        assert all(f.result(timeout=300).status == "ok" for f in side_by_side)
        for n, shards in jobs.items():
            for info, shard in shards:
                assert pool.submit_shard(job(n, info, shard, "b")).result(timeout=300).status == "ok"
    finally:
        pool.shutdown()

    def staged(lake: str) -> list[tuple]:
        """The staged detections of every shard, boxes rounded."""
        rows = []
        for n, shards in jobs.items():
            for info, shard in shards:
                table = read_parquet(job(n, info, shard, lake).path("detections"))  # none: the shard detected nothing
                rows += [(r["video_id"], r["shard_index"], r["frame_index"], r["track_id"] or 0, r["class_id"],
                          *(round(r[k], 2) for k in ("x1", "y1", "x2", "y2"))) for r in (table.to_pylist() if table is not None else [])]
        return sorted(rows)

    a, b = staged("a"), staged("b")
    assert a == b and len(a) > 20


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
        result = pool.submit_shard(job).result(timeout=300)
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
        script = ("import ray\nfrom videolake.workers.pool import ray_session\n"
                  "with ray_session() as how:\n    print(how, int(ray.cluster_resources()['CPU']))")
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                             cwd=Path(__file__).resolve().parents[2])
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.split() == ["local", str(os.cpu_count())]
    finally:
        shutil.rmtree(temp, ignore_errors=True)
