"""Scheduled runs: ``videolake serve`` against a real Prefect API fires on its schedule, and each
run analyses only what is new."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from videolake.pipeline.lake import MARKER
from videolake.pipeline.query import run_sql
from tests.conftest import FAST, videolake_bin


@pytest.mark.slow
def test_serve_fires_on_its_interval_and_later_runs_only_pick_up_new_videos(samples_dir, tmp_path, cli_env):
    videos, lake = tmp_path / "videos", tmp_path / "lake"
    videos.mkdir()
    shutil.copy(samples_dir / "carphone_pristine.mp4", videos / "cam1.mp4")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**FAST, "shard_seconds": 0}))
    env = {**cli_env, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    name = f"serve-test-{os.getpid()}"
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([videolake_bin(), "serve", str(videos), "--out", str(lake), "--interval", "8",
                               "--config", str(tmp_path / "run.yaml"), "--name", name],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        runs = _wait_for_runs(lake, 2, server, tmp_path / "serve.log")
        shutil.copy(samples_dir / "bikes.mp4", videos / "cam2.mp4")  # a new upload between ticks (a copy of cam1 would be no new video)
        n = len(runs)
        runs = _wait_for_runs(lake, n + 1, server, tmp_path / "serve.log", new_ok=True)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
    first, second = runs[0], runs[1]
    assert (first["videos_ok"], first["videos_done_before"]) == (1, 0)
    assert (second["videos_ok"], second["videos_done_before"], second["shards_processed"]) == (0, 1, 0)
    assert second["wall_s"] < 10, second["wall_s"]  # an empty run lists and stops: no Ray, no models
    assert any(r["videos_ok"] == 1 and r["videos_done_before"] == 1 for r in runs[2:])
    print(f"\nscheduled runs: {[(r['videos_ok'], r['videos_done_before'], round(r['wall_s'], 1)) for r in runs]}")

    deployment, flow_runs = asyncio.run(_read_deployment(f"analyze/{name}"))
    assert deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert deployment.parameters["lake"] == str(lake) and deployment.parameters["config"]["imgsz"] == 320
    assert [s.schedule.interval.total_seconds() for s in deployment.schedules] == [8.0]
    # The UI's parameter form is typed: every RunConfig field with its type, default and description.
    form = deployment.parameter_openapi_schema["definitions"]["RunConfig"]
    assert form["additionalProperties"] is False
    assert form["properties"]["analysis_fps"]["type"] == "number" and form["properties"]["analysis_fps"]["default"] == 8.0
    assert form["properties"]["imgsz"]["type"] == "integer" and "multiple of 32" in form["properties"]["imgsz"]["description"]
    assert all(field.get("description") for field in form["properties"].values())
    assert sum(r.state.is_completed() for r in flow_runs) >= len(runs)


def _wait_for_runs(lake, count, server, log_path, new_ok=False, timeout_s=300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, f"serve exited: {log_path.read_text()[-3000:]}"
        if (lake / MARKER).is_file():  # written last when the lake is made: its tables are all there
            rows = run_sql(lake, "SELECT * FROM runs ORDER BY started_at").to_pylist()
            if len(rows) >= count and (not new_ok or rows[-1]["videos_ok"] == 1):
                return rows
        time.sleep(1)
    raise TimeoutError(f"fewer than {count} scheduled runs in {timeout_s} s: {log_path.read_text()[-3000:]}")


async def _read_deployment(name):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(name)
        runs = await client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
        return deployment, runs
