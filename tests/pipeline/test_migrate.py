"""Upgrading a lake that videolake's layout-1 code wrote (tests/data/lake_layout1, see its make.sh)."""

import json
import os
import shutil
from pathlib import Path

import pytest

from videolake.pipeline.config import RunConfig
from videolake.pipeline.errors import NotALakeError
from videolake.pipeline.lake import Lake
from videolake.pipeline.migrate import LEGACY, migrate
from videolake.pipeline.samples import write_samples

FIXTURE = Path(__file__).parent.parent / "data" / "lake_layout1"
SAMPLES = Path("/tmp/videolake-legacy-samples")  # where the fixture's uris point
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
UNFINISHED = ("bigbuckbunny-1b1a9937f743", "e258afd590f31016")  # its run was cut before its videos row


@pytest.fixture
def legacy(tmp_path):
    """A copy of the layout-1 lake, with its source files back in place, unchanged (same bytes, same mtimes)."""
    write_samples(SAMPLES)
    (SAMPLES / "broken.mp4").write_bytes(b"")
    for name, mtime_ns in EXPECTED["mtime_ns"].items():
        os.utime(SAMPLES / name, ns=(mtime_ns, mtime_ns))
    lake = tmp_path / "lake"
    shutil.copytree(FIXTURE / "lake", lake)
    return lake


def _rounded(rows):
    return [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]


def _rows(lake, sql):
    return _rounded(Lake.open(lake).sql(sql).to_pylist())


def test_migrate_keeps_every_row_by_layout_1s_rules(legacy):
    with pytest.raises(NotALakeError, match="older layout.*videolake migrate"):
        Lake.open(legacy)
    report = migrate(Lake(legacy))
    assert (report.videos, report.runs, report.shards, report.unfinished, report.identified) == (6, 3, 14, 1, 4)
    for view in ("detections", "clips", "videos", "all_videos", "runs", "shards", "tracks", "failed"):
        assert _rows(legacy, f"SELECT count(*) AS n FROM {view}") == [{"n": EXPECTED["counts"][view]}], view
    # Every finished video's detections with their stitched ids: what layout 1's views gave, minus
    # the unfinished video's rows, which the next run analyses again.
    tracked = _rounded(r for r in EXPECTED["tracked"] if (r["video_id"], r["config_hash"]) != UNFINISHED)
    assert len(tracked) == report.detections < EXPECTED["counts"]["all_detections"]
    assert _rows(legacy, "SELECT video_id, config_hash, frame_index, track_id, round(x1, 2) AS x1 FROM all_detections "
                         "ORDER BY ALL") == tracked
    assert _rows(legacy, "SELECT video_id, config_hash, clip_index, track_id, action FROM clips ORDER BY ALL") == EXPECTED["clips"]
    assert _rows(legacy, "SELECT video_id, config_hash, uri, status, error_kind, n_detections, n_tracks, n_clips "
                         "FROM all_videos ORDER BY ALL") == EXPECTED["videos"]
    assert _rows(legacy, "SELECT run_id, config_hash, videos_ok, videos_failed FROM runs ORDER BY ALL") == EXPECTED["runs"]
    assert _rows(legacy, "SELECT run_id, video_id, shard_index, status FROM shards ORDER BY ALL") == EXPECTED["shards"]
    assert set(_rows(legacy, "SELECT DISTINCT camera_id FROM all_videos")[0].values()) == {SAMPLES.name}
    # Nothing deleted: layout 1's files are kept aside, byte for byte.
    old = sorted(p.relative_to(FIXTURE / "lake") for p in (FIXTURE / "lake").rglob("*") if p.is_file())
    assert sorted(p.relative_to(legacy / LEGACY) for p in (legacy / LEGACY).rglob("*") if p.is_file()) == old


def test_a_run_upgrades_the_lake_by_itself_and_finds_nothing_new(legacy):
    from videolake.pipeline.plan import plan_run
    from videolake.pipeline.runs import triage

    config = RunConfig(imgsz=320, analysis_fps=4.0, shard_seconds=4.0)
    plan = plan_run([SAMPLES], legacy, config)  # as `videolake run` starts: the upgrade happens here
    assert plan.config_hash == "ef1d9be5b2979f4d" and plan.lake.layout() == 2
    work = triage(plan.sources, plan.lake.state(plan.config_hash, plan.sources))
    assert not work.todo  # the analysed files are recognised by content: nothing is analysed again
    assert sorted(s.uri.rsplit("/", 1)[-1] for s in work.done_before) == ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"]
    assert [s.uri.rsplit("/", 1)[-1] for s, _ in work.quarantined] == ["broken.mp4"]
    again = plan_run([SAMPLES], legacy, config)  # and a second open finds an up-to-date lake
    assert again.lake.layout() == 2 and {s.video_id for s in again.sources} == {s.video_id for s in plan.sources}
