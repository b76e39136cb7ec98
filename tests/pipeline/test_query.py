import pytest

from videolake.pipeline.errors import LakeError, NotALakeError
from videolake.pipeline.lake import Lake
from videolake.pipeline.query import describe_views, run_sql
from tests.synthetic_lake import publish_video


def test_an_empty_lake_still_has_every_view_with_its_columns(tmp_path):
    views = {v.name: v for v in describe_views(Lake.open_or_create(tmp_path))}
    assert {"detections", "clips", "videos", "runs", "tracks", "failed", "shards", "all_clips", "ledger", "track_map"} <= set(views)
    assert all(v.rows == 0 for v in views.values())
    assert ("config_hash", "VARCHAR") in views["clips"].columns
    assert ("ts", "TIMESTAMP WITH TIME ZONE") in views["detections"].columns
    assert [c for c, _ in views["tracks"].columns] == ["video_id", "config_hash", "track_id", "t_first_s", "t_last_s",
                                                       "n_detections", "class_name"]


def test_default_views_show_the_latest_finished_config_with_stitched_ids(tmp_path):
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    lake = Lake.open_or_create(tmp_path)
    for config, offset, raw_ids in (("old", 0, [1, 2]), ("0123456789", 60, [1, 1_000_001])):
        rows = [{"shard_index": raw // 1_000_000, "frame_index": i, "t_s": i / 10, "track_id": raw, "class_id": 0,
                 "class_name": "Normal", "confidence": 0.9, "x1": 0, "y1": 0, "x2": 1, "y2": 1} for i, raw in enumerate(raw_ids)]
        publish_video(lake, "v", config_hash=config, detections=rows, track_map={r: 1 for r in raw_ids}, shards=[0, 1],
                      video={"finished_at": t0 + timedelta(seconds=offset)})
    out = run_sql(tmp_path, "SELECT track_id, t_first_s, t_last_s, n_detections, config_hash FROM tracks").to_pylist()
    assert out == [{"track_id": 1, "t_first_s": 0.0, "t_last_s": 0.1, "n_detections": 2, "config_hash": "0123456789"}]
    assert run_sql(tmp_path, "SELECT count(*) AS n FROM all_detections").column("n")[0].as_py() == 4
    assert run_sql(tmp_path, "SELECT raw_track_id, track_id FROM track_map WHERE config_hash = '0123456789' ORDER BY 1"
                   ).to_pylist() == [{"raw_track_id": 1, "track_id": 1}, {"raw_track_id": 1_000_001, "track_id": 1}]


def test_bad_sql_is_a_lake_error_and_a_folder_without_a_lake_is_refused(tmp_path):
    Lake.open_or_create(tmp_path / "lake")
    with pytest.raises(LakeError, match="query failed"):
        run_sql(tmp_path / "lake", "SELECT nope FROM clips")
    for missing in (tmp_path / "missing", tmp_path):
        with pytest.raises(NotALakeError, match="not a videolake lake"):
            run_sql(missing, "SELECT 1")


def test_a_lake_path_with_glob_characters_reads_that_lake_only(tmp_path):
    from videolake.pipeline.errors import ConfigError
    from tests.synthetic_lake import write_sharded_video

    for name in ("lake*", "lake-1", "lake-sibling", "lake1"):  # the same video in each: the same file names
        write_sharded_video(str(tmp_path / name), "a", n_shards=2)
    write_sharded_video(str(tmp_path / "lake-sibling"), "b", n_shards=2)
    with pytest.raises(ConfigError, match=r"has '\['"):  # delta-rs cannot write under '[': refused in one line
        Lake.open_or_create(tmp_path / "lake[1]")
    (tmp_path / "lake-1").rename(tmp_path / "lake[1]")  # a lake moved there is read (Delta paths are relative)
    count = "SELECT count(*) AS n, count(DISTINCT video_id) AS videos FROM all_detections"
    assert run_sql(tmp_path / "lake-sibling", count).to_pylist() == [{"n": 40, "videos": 2}]
    for name in ("lake*", "lake[1]"):
        assert run_sql(tmp_path / name, count).to_pylist() == [{"n": 20, "videos": 1}], name
