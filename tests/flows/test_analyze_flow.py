"""The analyze flow end to end: real Prefect API server, real Ray, real models, real video."""

import shutil

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.analyze import analyze
from pipeline.query import run_sql
from tests.conftest import FAST

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mixed_folder(samples_dir, corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    shutil.copy(samples_dir / "carphone_pristine.mp4", folder)
    for name in ("vfr", "mjpeg_avi", "odd_size", "truncated", "zero_bytes", "text", "audio_only"):
        shutil.copy(corpus[name].path, folder)
    return folder


def test_flow_analyses_good_videos_records_bad_ones_and_shows_each_video_in_prefect(
    prefect_api, ray_local, mixed_folder, tmp_path
):
    lake = tmp_path / "lake"
    summary = analyze(sources=[str(mixed_folder)], lake=str(lake), config={**FAST, "workers": 2}, show_progress=False)

    assert summary.videos_ok + summary.videos_failed == 8
    failed = {uri.rsplit("/", 1)[-1]: error for uri, error in summary.failures}
    assert set(failed) == {"zero_bytes.mp4", "not_a_video.mp4", "audio_only.mp4"}
    assert "empty" in failed["zero_bytes.mp4"] and "no video stream" in failed["audio_only.mp4"]
    assert summary.videos_ok == 5 and summary.frames_analyzed > 0 and summary.n_tracks > 0

    videos = run_sql(lake, "SELECT uri, status, error, frames_analyzed, run_id FROM videos").to_pylist()
    assert len(videos) == 8 and {v["run_id"] for v in videos} == {summary.run_id}
    assert {v["uri"].rsplit("/", 1)[-1] for v in videos if v["status"] == "failed"} == set(failed)
    assert all(v["error"] is None for v in videos if v["status"] == "ok")
    assert sum(v["frames_analyzed"] for v in videos) == summary.frames_analyzed
    n_clips = run_sql(lake, "SELECT count(*) AS n FROM clips").column("n")[0].as_py()
    assert n_clips == sum(summary.clips_by_action.values()) > 0
    runs = run_sql(lake, "SELECT * FROM runs").to_pylist()
    assert len(runs) == 1 and runs[0]["videos_failed"] == 3 and runs[0]["config_hash"] == summary.config_hash
    assert runs[0]["action_classes"] == ["standing", "walking", "running", "falling", "lying"]

    # Prefect's API saw the run: one analyze-video task run per probed video, failed ones as Failed.
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(summary.run_id)
        assert flow_run.state.is_completed()
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
    probes = [t for t in task_runs if t.name.startswith("probe")]
    analyses = [t for t in task_runs if t.name.startswith("analyze")]
    assert len(probes) == 8 and len(analyses) == 5
    assert all(t.state.is_completed() for t in analyses)
    assert sum(t.state.is_failed() for t in probes) == 3


def test_rerun_with_the_same_config_replaces_rather_than_duplicates(prefect_api, ray_local, samples_dir, tmp_path):
    lake = tmp_path / "lake"
    source = [str(samples_dir / "carphone_pristine.mp4")]
    first = analyze(sources=source, lake=str(lake), config=FAST, show_progress=False)
    count = lambda table: run_sql(lake, f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()  # noqa: E731
    before = (count("detections"), count("clips"), count("videos"))
    second = analyze(sources=source, lake=str(lake), config=FAST, show_progress=False)
    assert (count("detections"), count("clips"), count("videos")) == before
    assert count("runs") == 2 and first.run_id != second.run_id
