"""The Python API on real video: ``videolake.analyze`` (the CLI's path) and ``videolake.analyze_video`` (in memory)."""

import subprocess
import sys

import pytest

import videolake
from tests.conftest import FAST


def test_import_videolake_lists_the_api_and_stays_cheap():
    out = subprocess.run([sys.executable, "-c", "import sys, videolake; help(videolake); print('torch' in sys.modules, 'ray' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    for name in ("analyze", "analyze_video", "open_lake", "LakeReader", "RunConfig", "RunSummary", "VideoResult"):
        assert name in out
    assert out.strip().endswith("False False")  # nothing heavy is imported until used
    assert set(videolake.__all__) <= set(dir(videolake))
    with pytest.raises(AttributeError):
        videolake.nope  # noqa: B018


@pytest.mark.slow
def test_analyze_video_gives_the_rows_of_a_lake_run_of_the_same_file(samples_dir, tmp_path, prefect_api):
    video = samples_dir / "bikes.mp4"
    memory = videolake.analyze_video(video, device="cpu", **FAST)
    assert memory.result.status == "ok" and memory.detections.num_rows > 0 and memory.clips.num_rows > 0
    summary = videolake.analyze([video], tmp_path / "lake", device="cpu", workers=1, **FAST)
    assert summary.videos_ok == 1 and summary.frames_analyzed == memory.result.frames_analyzed
    from videolake.pipeline.query import run_sql

    keys = "frame_index, track_id, class_id, round(x1, 2) AS x1, round(y1, 2) AS y1, round(x2, 2) AS x2, round(y2, 2) AS y2"
    lake_dets = run_sql(tmp_path / "lake", f"SELECT {keys} FROM detections ORDER BY ALL").to_pylist()
    import duckdb

    mem = duckdb.connect()
    mem.register("d", memory.detections)
    mem.register("c", memory.clips)
    assert mem.sql(f"SELECT {keys} FROM d ORDER BY ALL").fetch_arrow_table().to_pylist() == lake_dets
    clip_keys = "clip_index, track_id, action, round(action_confidence, 4) AS conf"
    assert (mem.sql(f"SELECT {clip_keys} FROM c ORDER BY ALL").fetch_arrow_table().to_pylist()
            == run_sql(tmp_path / "lake", f"SELECT {clip_keys} FROM clips ORDER BY ALL").to_pylist())
    again = videolake.analyze([video], tmp_path / "lake", device="cpu", **FAST)
    assert again.videos_done_before == 1 and again.videos_ok == 0  # nothing new: no Prefect, no Ray


@pytest.mark.slow
def test_open_lake_queries_renders_and_reports_what_a_run_wrote(samples_dir, tmp_path, prefect_api):
    lake = tmp_path / "lake"
    summary = videolake.analyze([samples_dir / "bikes.mp4"], lake, device="cpu", workers=1, **FAST)
    with videolake.open_lake(lake) as opened:
        clips = opened.sql("SELECT action, count(*) AS n FROM clips GROUP BY 1").df()
        assert dict(zip(clips["action"], clips["n"])) == summary.clips_by_action
        assert opened.table("videos").pl()["frames_analyzed"].to_list() == [summary.frames_analyzed]
        (video_id,) = opened.sql("SELECT video_id FROM videos").fetchall()[0]
        rendered = opened.render(video_id, tmp_path / "clip.mp4", 0.0, 2.0)
        report = opened.report(tmp_path / "report", keyframes=1)
        with pytest.raises(videolake.ConfigError, match="no table 'nope'"):
            opened.table("nope")
        before = opened.sql("SELECT count(*) FROM runs").fetchall()[0][0]
        videolake.analyze([samples_dir / "bikes.mp4"], lake, device="cpu", **FAST)  # a second (empty) run
        assert opened.sql("SELECT count(*) FROM runs").fetchall()[0][0] == before  # as it was when opened
        opened.refresh()
        assert opened.sql("SELECT count(*) FROM runs").fetchall()[0][0] == before + 1
    assert rendered.frames_written > 0 and rendered.boxes_drawn > 0
    import av

    with av.open(str(rendered.path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == rendered.frames_written
    assert report.index.exists() and report.videos == 1
    with pytest.raises(videolake.LakeError):
        videolake.open_lake(tmp_path / "not-a-lake")
