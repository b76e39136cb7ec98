"""What a CLI run shows in Prefect (a real server): its name, logs, artifacts, and an event per fall episode."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

from tests.action_models import one_action_model
from tests.conftest import videolake_bin
from tests.media import encode, footage_path, frames_at
from videolake.pipeline.query import run_sql

pytestmark = pytest.mark.slow


def test_a_cli_run_sends_its_logs_artifacts_and_fall_events_to_prefect_and_keeps_the_terminal_quiet(
    tmp_path, cli_env, prefect_api
):
    # People wholly inside the picture: a box the frame's edge cuts is never `falling` (clips.Evidence.PARTIAL).
    vtest = footage_path("vtest.avi")
    assert vtest is not None, "needs OpenCV's vtest.avi in the venv (make install puts it there)"
    (tmp_path / "cam7").mkdir()
    video, lake = encode(tmp_path / "cam7" / "vtest-6s.mp4", frames_at(vtest, 0.0, 6.0, fps=10), fps=10).path, tmp_path / "lake"
    model = one_action_model(tmp_path / "always_falling.safetensors", "falling")  # the real model does not say falling here
    run = subprocess.run([videolake_bin(), "run", str(video), "--out", str(lake), "--actions", str(model),
                          "--analysis-fps", "4", "--quiet"],  # the default imgsz: vtest's people are 50-100 px
                         capture_output=True, text=True, env=cli_env, timeout=600)
    assert run.returncode == 0, run.stderr
    episodes = run_sql(lake, "SELECT video_id, track_id, t_start_s, t_end_s, max_confidence FROM action_episodes "
                             "WHERE action = 'falling' ORDER BY t_start_s, track_id").to_pylist()
    assert episodes, "the test model answers falling for every classified clip"
    assert f"alerts: {len(episodes)} falling episode(s)" in run.stdout, run.stdout
    # The terminal has the summary only: the flow's log lines went to the API, not to the console.
    assert "to analyse" not in run.stdout + run.stderr and "Finished in state" not in run.stdout + run.stderr, run.stderr

    (run_id,) = run_sql(lake, "SELECT run_id FROM runs").column("run_id").to_pylist()
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run_id)
        runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
        artifacts = {a.key: a for a in client.read_artifacts(flow_run_filter=runs)}
        logs = [log.message for log in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))]
    assert flow_run.state.is_completed() and flow_run.name == f"{video.name} → lake"
    assert any("1 to analyse" in m for m in logs) and any(m.startswith("frames analysed:") for m in logs), logs
    assert set(artifacts) == {"videolake-progress", "videolake-summary"}  # no failures: no failures table
    figures = {row["figure"]: row["value"] for row in json.loads(artifacts["videolake-summary"].data)}
    assert figures["videos ok"] == "1" and figures["falling episodes"] == str(len(episodes))

    events = _events(prefect_api, "videolake.action.", run_id, len(episodes))
    got = sorted((e["payload"]["track_id"], e["payload"]["t_start_s"]) for e in events)
    assert got == sorted((ep["track_id"], ep["t_start_s"]) for ep in episodes)
    first = events[0]
    assert first["event"] == "videolake.action.falling"
    assert first["resource"]["videolake.video_id"] == episodes[0]["video_id"]
    assert first["payload"]["uri"] == str(video) and first["payload"]["camera_id"] == "cam7"
    assert 0.99 <= first["payload"]["max_confidence"] <= 1.0
    assert any(r.get("prefect.resource.id") == f"prefect.flow-run.{flow_run.id}" for r in first["related"])


def _events(api_url: str, prefix: str, run_id: str, expected: int, timeout_s: float = 30.0) -> list[dict]:
    """The server's events of ``run_id`` under ``prefix`` (the server stores them a moment after they arrive)."""
    deadline = time.monotonic() + timeout_s
    found: list[dict] = []
    while time.monotonic() < deadline:
        reply = httpx.post(f"{api_url}/events/filter", json={"filter": {"event": {"prefix": [prefix]}}, "limit": 50})
        reply.raise_for_status()
        found = [e for e in reply.json()["events"] if e["payload"].get("run_id") == run_id]
        if len(found) >= expected:
            return found
        time.sleep(1)
    raise AssertionError(f"{len(found)} of {expected} events arrived in {timeout_s} s")
