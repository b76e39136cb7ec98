"""The analyze flow end to end: real Prefect API server, real Ray, real models, real video."""

import json
import shutil

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from videolake.flows.analyze import analyze
from videolake.pipeline.query import run_sql
from tests.conftest import FAST

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mixed_folder(samples_dir, corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    shutil.copy(samples_dir / "carphone_pristine.mp4", folder)
    for name in ("vfr", "mjpeg_avi", "odd_size", "truncated", "zero_bytes", "text", "audio_only"):
        shutil.copy(corpus[name].path, folder)
    return folder


def test_flow_analyses_good_videos_records_bad_ones_and_shows_its_progress_in_prefect(
    prefect_api, ray_local, mixed_folder, tmp_path
):
    lake = tmp_path / "lake"
    summary = analyze(sources=[str(mixed_folder)], lake=str(lake), config={**FAST, "workers": 2}, show_progress=False)

    assert summary.videos_ok + summary.videos_failed == 8 and summary.videos_done_before == 0
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
    assert runs[0]["action_classes"] == ["standing", "walking", "running", "sitting", "lying", "falling"]

    # Prefect's API saw the run: completed, with its progress artifact at 100 %; the work inside it is
    # Ray calls, not task runs (per-shard state is the lake's shards table: one row per shard).
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(summary.run_id)
        assert flow_run.state.is_completed()
        assert flow_run.name == f"{mixed_folder.name} → lake"  # what it read and where it wrote
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
    assert task_runs == []
    by_key = {a.key: a for a in artifacts}
    assert {k: a.type for k, a in by_key.items()} == {"videolake-progress": "progress", "videolake-summary": "table",
                                                      "videolake-failures": "table"}
    assert by_key["videolake-progress"].data == 100.0
    failure_rows = json.loads(by_key["videolake-failures"].data)
    assert {r["video"].rsplit("/", 1)[-1] for r in failure_rows} == set(failed)
    shards = run_sql(lake, "SELECT status, attempts, worker FROM shards").to_pylist()
    assert len(shards) == 5 and all(s["status"] == "ok" and s["attempts"] == 1 and s["worker"] for s in shards)


def _count(lake, table):
    return run_sql(lake, f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()


def test_reruns_process_only_what_is_new_changed_or_configured_differently(prefect_api, ray_local, samples_dir, tmp_path):
    import os

    folder, lake = tmp_path / "videos", str(tmp_path / "lake")
    folder.mkdir()
    shutil.copy(samples_dir / "carphone_pristine.mp4", folder / "a.mp4")
    first = analyze(sources=[str(folder)], lake=lake, config=FAST, show_progress=False)
    before = {t: _count(lake, t) for t in ("detections", "clips", "videos", "tracks")}
    assert first.videos_ok == 1 and before["detections"] > 0

    again = analyze(sources=[str(folder)], lake=lake, config=FAST, show_progress=False)
    assert (again.videos_ok, again.videos_done_before, again.shards_processed) == (0, 1, 0)
    assert "0 new, 1 already done" in "\n".join(again.lines())
    assert {t: _count(lake, t) for t in before} == before

    shutil.copy(samples_dir / "carphone_pristine.mp4", folder / "b.mp4")  # a copy: the same video, nothing to do
    third = analyze(sources=[str(folder)], lake=lake, config=FAST, show_progress=False)
    assert (third.videos_ok, third.videos_done_before, third.shards_processed) == (0, 1, 0)

    shutil.copy(samples_dir / "bikes.mp4", folder / "c.mp4")  # a new video: only it is analysed
    fourth = analyze(sources=[str(folder)], lake=lake, config=FAST, show_progress=False)
    assert (fourth.videos_ok, fourth.videos_done_before) == (1, 1)
    assert _count(lake, "videos") == 2 and _count(lake, "detections") > before["detections"]
    with_bikes = {t: _count(lake, t) for t in before}

    os.utime(folder / "a.mp4", ns=(10**18, 10**18))  # touched, same bytes: read again, recognised, not analysed
    shutil.copy(samples_dir / "bigbuckbunny.mp4", folder / "c.mp4")  # replaced by other bytes: a new video
    fifth = analyze(sources=[str(folder)], lake=lake, config=FAST, show_progress=False)
    assert (fifth.videos_ok, fifth.videos_done_before) == (1, 1)
    assert _count(lake, "videos") == 3 and _count(lake, "detections") > with_bikes["detections"]

    other = {**FAST, "conf": 0.5}  # a changed config: everything again, both configs kept
    sixth = analyze(sources=[str(folder)], lake=lake, config=other, show_progress=False)
    assert sixth.videos_ok == 2 and sixth.config_hash != first.config_hash
    latest = run_sql(lake, "SELECT config_hash, count(DISTINCT video_id) AS n FROM detections GROUP BY 1").to_pylist()
    assert {r["config_hash"]: r["n"] for r in latest} == {sixth.config_hash: 2, first.config_hash: 1}  # bikes: gone meanwhile
    assert set(run_sql(lake, "SELECT DISTINCT config_hash FROM all_detections").column("config_hash").to_pylist()) == {
        first.config_hash, sixth.config_hash}
    runs = run_sql(lake, "SELECT shards_total, shards_done_before, shards_processed, shards_failed FROM runs ORDER BY started_at").to_pylist()
    assert [r["shards_processed"] for r in runs] == [1, 0, 0, 1, 1, 2]


def test_a_video_with_a_creation_time_gets_recorded_at_camera_and_wall_clock_times(prefect_api, ray_local, samples_dir, tmp_path):
    from datetime import datetime, timedelta, timezone

    from tests.media import with_creation_time

    (tmp_path / "lobby").mkdir()
    video = with_creation_time(samples_dir / "carphone_pristine.mp4", tmp_path / "lobby" / "door.mp4", "2026-05-01T14:30:00.000000Z")
    lake = str(tmp_path / "lake")
    summary = analyze(sources=[str(video)], lake=lake, config={**FAST, "shard_seconds": 2}, show_progress=False)
    assert summary.videos_ok == 1
    start = datetime(2026, 5, 1, 14, 30, tzinfo=timezone.utc)
    (row,) = run_sql(lake, "SELECT camera_id, recorded_at, recorded_at_source FROM videos").to_pylist()
    assert row == {"camera_id": "lobby", "recorded_at": start, "recorded_at_source": "container"}
    for table, t in (("detections", "t_s"), ("clips", "t_start_s")):
        rows = run_sql(lake, f"SELECT {t} AS t, ts, camera_id FROM {table}").to_pylist()
        assert rows and all(r["ts"] == start + timedelta(microseconds=round(r["t"] * 1e6)) and r["camera_id"] == "lobby"
                            for r in rows), table
    found = run_sql(lake, "SELECT count(*) AS n FROM camera_detections('lobby', '2026-05-01 14:30:00', '2026-05-01 14:30:02')")
    assert 0 < found.column("n")[0].as_py() < _count(lake, "detections")


def test_shard_size_does_not_change_the_output_beyond_tracking_noise(prefect_api, ray_local, tmp_path):
    from tests.media import looped_video

    video = looped_video(tmp_path / "long.mp4", seconds=60)
    whole = analyze(sources=[str(video.path)], lake=str(tmp_path / "whole"), config={**FAST, "shard_seconds": 0},
                    show_progress=False)
    sharded = analyze(sources=[str(video.path)], lake=str(tmp_path / "sharded"), config={**FAST, "shard_seconds": 5},
                      show_progress=False)
    assert (whole.shards_total, sharded.shards_total) == (1, 10)  # 5 s rounds up to whole 2 s clips: 6 s shards
    q_clips = "SELECT DISTINCT video_id, clip_index FROM clips ORDER BY ALL"
    assert run_sql(tmp_path / "whole", q_clips).to_pylist() == run_sql(tmp_path / "sharded", q_clips).to_pylist()
    q_dets = "SELECT frame_index, round(t_s, 4) AS t, round(x1) AS x1, round(y1) AS y1, round(x2) AS x2, round(y2) AS y2 FROM detections ORDER BY ALL"
    assert run_sql(tmp_path / "whole", q_dets).to_pylist() == run_sql(tmp_path / "sharded", q_dets).to_pylist()
    n_tracks = [_count(lake, "tracks") for lake in (tmp_path / "whole", tmp_path / "sharded")]
    n_clips = [_count(lake, "clips") for lake in (tmp_path / "whole", tmp_path / "sharded")]
    assert abs(n_tracks[0] - n_tracks[1]) <= max(1, 0.1 * n_tracks[0]), n_tracks
    assert abs(n_clips[0] - n_clips[1]) <= 0.1 * n_clips[0], n_clips
    keys = run_sql(tmp_path / "sharded", "SELECT count(*) AS n, count(DISTINCT (clip_index, track_id)) AS d FROM clips").to_pylist()[0]
    assert keys["n"] == keys["d"]  # each (clip, track) once
    print(f"shard invariance: tracks {n_tracks}, clips {n_clips}")


def test_quarantined_videos_are_skipped_until_retry_failed(prefect_api, ray_local, corpus, tmp_path):
    lake = str(tmp_path / "lake")
    first = analyze(sources=[str(corpus["text"].path)], lake=lake, config=FAST, show_progress=False)
    assert first.videos_failed == 1
    second = analyze(sources=[str(corpus["text"].path)], lake=lake, config=FAST, show_progress=False)
    assert (second.videos_failed, second.videos_quarantined) == (0, 1)
    assert any("quarantined" in line for line in second.lines())
    third = analyze(sources=[str(corpus["text"].path)], lake=lake, config=FAST, show_progress=False, retry_failed=True)
    assert (third.videos_failed, third.videos_quarantined) == (1, 0)
    failed = run_sql(lake, "SELECT error_kind, error FROM failed").to_pylist()
    assert len(failed) == 1 and failed[0]["error_kind"] == "decode" and "not a readable video" in failed[0]["error"]


def test_a_corpus_of_damaged_videos_completes_with_every_variant_accounted_for(prefect_api, ray_local, tmp_path):
    from collections import Counter

    from tests.media import make_damaged_corpus

    variants = make_damaged_corpus(tmp_path / "damaged")
    assert len(variants) >= 50
    lake = str(tmp_path / "lake")
    summary = analyze(sources=[str(tmp_path / "damaged")], lake=lake, config={**FAST, "workers": 2}, show_progress=False)
    assert summary.videos_ok + summary.videos_failed == len(variants)
    rows = run_sql(lake, "SELECT uri, status, error_kind, error FROM videos").to_pylist()
    assert len(rows) == len(variants)
    assert all(r["status"] == "ok" or (r["error"] and r["error_kind"] in ("source", "decode")) for r in rows), rows
    by = Counter(r["error_kind"] or "ok" for r in rows)
    assert by["ok"] >= 10 and by["decode"] >= 20
    huge = next(r for r in rows if r["uri"].endswith("huge_dimensions_9000.mp4"))
    assert "exceeds the limit" in huge["error"]
    print(f"corpus: {len(rows)} variants: {dict(by)}")


def test_a_worker_killed_mid_shard_costs_one_retry_of_that_shard(prefect_api, ray_local, samples_dir, tmp_path):
    import contextvars
    import os
    import signal
    import threading
    import time

    lake = tmp_path / "lake"
    outcome = {}
    # Prefect's settings (the test's API URL) live in context variables: the thread runs in a copy of
    # this context, or it would start an ephemeral Prefect server of its own.
    context = contextvars.copy_context()
    run = threading.Thread(target=lambda: context.run(lambda: outcome.setdefault("summary", analyze(
        sources=[str(samples_dir / "bikes.mp4")], lake=str(lake), config={**FAST, "workers": 1, "shard_seconds": 4},
        show_progress=False))))
    run.start()
    killed = None
    deadline = time.time() + 180
    while killed is None and time.time() < deadline and run.is_alive():
        busy = [p for p in _own_processes() if "ray::VideoWorker.process" in " ".join(_cmdline(p))]
        if busy and list(lake.glob("_staging/ledger/*/*/*.parquet")):  # one shard committed, the next one in flight
            killed = busy[0].pid
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    run.join(timeout=300)
    assert killed, "no worker was caught mid-shard"
    summary = outcome["summary"]
    assert (summary.videos_ok, summary.shards_failed, summary.shards_processed) == (1, 0, 3)
    shards = run_sql(lake, "SELECT shard_index, status, attempts FROM shards ORDER BY 1").to_pylist()
    assert [s["status"] for s in shards] == ["ok"] * 3
    assert sorted(s["attempts"] for s in shards) == [1, 1, 2]  # the killed shard ran twice; nothing else did


def test_a_video_that_times_out_twice_is_quarantined_with_the_reason(prefect_api, ray_local, samples_dir, tmp_path):
    lake = str(tmp_path / "lake")
    source = [str(samples_dir / "bikes.mp4")]
    config = {**FAST, "analysis_fps": 0, "shard_timeout_s": 1, "workers": 1}  # 250 frames: far more than 1 s of work
    first = analyze(sources=source, lake=lake, config=config, show_progress=False)
    assert (first.videos_ok, first.videos_failed) == (0, 1)
    failed = run_sql(lake, "SELECT error_kind, error FROM failed").to_pylist()
    assert failed[0]["error_kind"] == "timeout" and "ran past the 1 s limit (2 attempts)" in failed[0]["error"], failed
    assert run_sql(lake, "SELECT attempts FROM shards").column("attempts").to_pylist() == [2]
    second = analyze(sources=source, lake=lake, config=config, show_progress=False)  # a scheduled rerun: no cost
    assert (second.videos_failed, second.videos_quarantined, second.shards_total) == (0, 1, 0)
    assert any("quarantined (use --retry-failed)" in line and "ran past the 1 s limit" in line for line in second.lines())


def _own_processes() -> list:
    """This test session's processes (its Ray among them): never another session's workers on the machine."""
    import psutil

    return psutil.Process().children(recursive=True)


def _cmdline(process) -> list[str]:  # noqa: ANN001 - a psutil.Process
    import psutil

    try:
        return process.cmdline()
    except psutil.Error:
        return []
