"""Runs from a bucket into a bucket lake, on a real S3-compatible server on loopback (moto).

What a user does: point ``videolake run`` at ``s3://`` sources and an ``s3://`` lake, query it,
run again (nothing new), upload one more video (only it runs), survive a flaky store, and never
see the secret key anywhere.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import time

import pytest

from videolake.flows.analyze import analyze
from videolake.pipeline.query import run_sql
from tests.conftest import FAST, videolake_bin
from tests.objectstore import ACCESS_KEY, SECRET, flaky_proxy, proxy_stats

FAST_FLAGS = ["--imgsz", "320", "--analysis-fps", "4", "--pose", "none", "--shard-seconds", "4", "--quiet"]
RESULT_SQL = """
    SELECT regexp_extract(v.uri, '[^/]+$') AS file, d.frame_index, d.track_id, d.class_id,
           round(d.x1, 1) AS x1, round(d.y1, 1) AS y1, round(d.x2, 1) AS x2, round(d.y2, 1) AS y2
    FROM detections d JOIN videos v USING (video_id) ORDER BY ALL
"""


def vl(*args, env, timeout=600):
    started = time.perf_counter()
    result = subprocess.run([videolake_bin(), *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)
    result.wall_s = time.perf_counter() - started
    return result


def _upload(s3, samples_dir, bucket, names):
    for key, name in names.items():
        s3.put_file(str(samples_dir / name), f"{bucket}/{key}")


def _buckets(s3, samples_dir, names):
    """This test's sources bucket, holding ``names`` (key → sample), and an empty lake bucket."""
    cams, lake_bucket = f"{s3.prefix}-cams", f"{s3.prefix}-lake"
    s3.mkdir(cams)
    s3.mkdir(lake_bucket)
    _upload(s3, samples_dir, cams, names)
    return cams, lake_bucket


@pytest.mark.slow
def test_bucket_to_bucket_runs_query_and_increments_like_local_disk_and_never_leak_the_secret(
        s3, s3_server, samples_dir, tmp_path, cli_env, prefect_api):
    cams, lake_bucket = _buckets(s3, samples_dir, {"2026-11-27/cam1/bikes.mp4": "bikes.mp4", "2026-11-27/cam2/carphone.mp4": "carphone_pristine.mp4"})
    # Credentials only through --storage-options: the environment has the endpoint but no keys.
    env = {k: v for k, v in cli_env.items() if not k.startswith("AWS_")}
    env.update({"AWS_ENDPOINT_URL": s3_server.url, "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
    creds = ["--storage-options", json.dumps({"key": ACCESS_KEY, "secret": SECRET})]
    lake = f"s3://{lake_bucket}/videolake"
    outputs = []

    remote = vl("run", f"s3://{cams}/2026-11-27/", "--out", lake, *FAST_FLAGS, *creds, env=env)
    outputs.append(remote)
    assert remote.returncode == 0, remote.stderr
    assert "videos: 2 ok, 0 failed; 2 new, 0 already done" in remote.stdout, remote.stdout

    local_dir = tmp_path / "local"
    local_dir.mkdir()
    (local_dir / "bikes.mp4").write_bytes((samples_dir / "bikes.mp4").read_bytes())
    (local_dir / "carphone.mp4").write_bytes((samples_dir / "carphone_pristine.mp4").read_bytes())
    local = vl("run", local_dir, "--out", tmp_path / "lake", *FAST_FLAGS, env=cli_env)
    assert local.returncode == 0, local.stderr
    frames = int(re.search(r"frames analysed: (\d+)", remote.stdout).group(1))
    print(f"\nbucket run {remote.wall_s:.1f} s, local run {local.wall_s:.1f} s, {frames} frames each")

    query = vl("query", lake, RESULT_SQL, "--format", "json", *creds, env=env)
    outputs.append(query)
    assert query.returncode == 0, query.stderr
    rows = json.loads(query.stdout)
    assert rows and rows == run_sql(tmp_path / "lake", RESULT_SQL).to_pylist()  # the same answers as from local disk

    again = vl("run", f"s3://{cams}/2026-11-27/", "--out", lake, *FAST_FLAGS, *creds, env=env)
    outputs.append(again)
    assert "videos: 0 ok, 0 failed; 0 new, 2 already done" in again.stdout, again.stdout
    print(f"empty run over the bucket: {again.wall_s:.1f} s")

    _upload(s3, samples_dir, cams, {"2026-11-27/cam3/carphone-2.mp4": "carphone_pristine.mp4",  # a copy: the same video
                                    "2026-11-27/cam3/bunny.mp4": "bigbuckbunny.mp4"})
    more = vl("run", f"s3://{cams}/2026-11-27/", "--out", lake, *FAST_FLAGS, *creds, env=env)
    outputs.append(more)
    assert "videos: 1 ok, 0 failed; 1 new, 2 already done" in more.stdout, more.stdout
    counts = json.loads(vl("query", lake, "SELECT count(*) AS videos, sum(n_detections) AS d FROM videos",
                           "--format", "json", *creds, env=env).stdout)
    assert counts[0]["videos"] == 3

    missing = vl("run", f"s3://{s3.prefix}-nope/x", "--out", lake, *FAST_FLAGS, *creds, env=env, timeout=120)
    outputs.append(missing)
    assert missing.returncode == 1 and f"s3://{s3.prefix}-nope/x" in missing.stderr and "not found" in missing.stderr
    assert missing.wall_s < 30, missing.wall_s

    # The secret is nowhere: not in output, the lake's bytes, Prefect's parameters and logs, or Ray's logs.
    for out in outputs:
        assert SECRET not in out.stdout + out.stderr
    objects = s3.find(lake_bucket)
    assert len(objects) > 10
    assert all(SECRET.encode() not in s3.cat_file(key) for key in objects)
    assert SECRET not in json.dumps(_prefect_records(prefect_api, lake), default=str)
    from videolake.pipeline.scratch import ray_temp_dir  # a run's own Ray keeps its sessions there (removed at its end)

    for path in filter(os.path.isfile, glob.glob(f"{ray_temp_dir()}/**", recursive=True) + glob.glob("/tmp/ray/session_latest/logs/**", recursive=True)):
        with open(path, "rb") as f:
            assert SECRET.encode() not in f.read(), path


def _prefect_records(api_url: str, lake: str) -> list:
    """Every flow run of ``lake`` with its parameters, plus every log line of those runs, from the Prefect API."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    async def read() -> list:
        async with get_client() as client:
            runs = [r for r in await client.read_flow_runs(limit=200) if r.parameters.get("lake") == lake]
            assert runs, "the bucket runs are in the Prefect API"
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs])))
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in runs])))
            return [r.model_dump() for r in runs] + [entry.model_dump() for entry in logs] + [t.model_dump() for t in tasks]

    return asyncio.run(read())


@pytest.mark.slow
def test_a_flaky_store_costs_retries_never_duplicates(s3, s3_server, prefect_api, ray_local, samples_dir, monkeypatch):
    import s3fs

    cams, lake_bucket = _buckets(s3, samples_dir, {"bikes.mp4": "bikes.mp4", "carphone.mp4": "carphone_pristine.mp4"})
    config = {**FAST, "workers": 2, "shard_seconds": 2}
    clean = analyze(sources=[f"s3://{cams}"], lake=f"s3://{lake_bucket}/clean", config=config, show_progress=False)
    with flaky_proxy(s3_server.url, fail_every=6) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)  # the driver and, through the pool, the workers
        s3fs.S3FileSystem.clear_instance_cache()
        flaky = analyze(sources=[f"s3://{cams}"], lake=f"s3://{lake_bucket}/flaky", config=config, show_progress=False)
        stats = proxy_stats(proxy)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    s3fs.S3FileSystem.clear_instance_cache()
    print(f"\nflaky store: {stats['failed']} of {stats['requests']} requests failed with 500/503; "
          f"run {flaky.wall_s:.1f} s vs {clean.wall_s:.1f} s clean")
    assert stats["failed"] >= 20
    assert (flaky.videos_ok, flaky.videos_failed, flaky.shards_failed) == (2, 0, 0)
    assert flaky.shards_processed == clean.shards_processed > 2
    lake = f"s3://{lake_bucket}/flaky"
    dupes = run_sql(lake, "SELECT count(*) - count(DISTINCT (video_id, frame_index, track_id, x1, y1)) AS n FROM all_detections")
    assert dupes.to_pylist() == [{"n": 0}]
    ledger = run_sql(lake, "SELECT count(*) AS n, count(DISTINCT (video_id, shard_index)) AS distinct_shards FROM ledger")
    assert ledger.to_pylist() == [{"n": clean.shards_processed, "distinct_shards": clean.shards_processed}]
    assert run_sql(lake, RESULT_SQL).to_pylist() == run_sql(f"s3://{lake_bucket}/clean", RESULT_SQL).to_pylist()


@pytest.mark.slow
def test_a_deployment_reads_its_bucket_credentials_from_a_prefect_secret_block(
        s3, s3_server, samples_dir, prefect_api, ray_local, monkeypatch):
    from prefect.blocks.system import Secret

    from videolake.pipeline.errors import ConfigError

    cams, lake_bucket = _buckets(s3, samples_dir, {"cam1/carphone.mp4": "carphone_pristine.mp4"})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # the run's environment has no keys: the block has them
        monkeypatch.delenv(key)
    Secret(value={"key": ACCESS_KEY, "secret": SECRET}).save(f"{s3.prefix}-storage", overwrite=True)
    lake = f"s3://{lake_bucket}/videolake"
    summary = analyze(sources=[f"s3://{cams}/"], lake=lake, config=FAST, show_progress=False, storage_block=f"{s3.prefix}-storage")
    assert summary.videos_ok == 1 and summary.frames_analyzed > 0
    assert run_sql(lake, "SELECT count(*) AS n FROM detections").column("n")[0].as_py() > 0
    with pytest.raises(ConfigError, match="storage_block 'no-such-block'"):
        analyze(sources=[f"s3://{cams}/"], lake=lake, config=FAST, show_progress=False, storage_block="no-such-block")
