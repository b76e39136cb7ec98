import pytest

from videolake.pipeline.errors import LakeError
from videolake.pipeline.lake import table_path, write_table
from videolake.pipeline.query import describe_views, run_sql


def test_an_empty_lake_still_has_every_view_with_its_columns(tmp_path):
    views = {v.name: v for v in describe_views(tmp_path)}
    assert {"detections", "clips", "videos", "runs", "tracks", "failed", "shards", "all_clips", "ledger"} <= set(views)
    assert all(v.rows == 0 for v in views.values())
    assert ("config_hash", "VARCHAR") in views["clips"].columns
    assert [c for c, _ in views["tracks"].columns] == ["video_id", "config_hash", "track_id", "t_first_s", "t_last_s",
                                                       "n_detections", "class_name"]


def test_default_views_show_the_latest_finished_config_with_stitched_ids(tmp_path):
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for config, offset, raw_ids in (("old", 0, [1, 2]), ("0123456789", 60, [1, 1_000_001])):
        kw = dict(config_hash=config, video_id="v", content_key="c")
        rows = [{"video_id": "v", "content_key": "c", "shard_index": raw // 1_000_000, "frame_index": i, "t_s": i / 10,
                 "track_id": raw, "class_id": 0, "class_name": "Normal", "confidence": 0.9, "x1": 0, "y1": 0, "x2": 1,
                 "y2": 1, "run_id": config} for i, raw in enumerate(raw_ids)]
        for shard in (0, 1):
            write_table(table_path(tmp_path, "detections", shard_key=f"s{shard}", **kw), "detections",
                        [r for r in rows if r["shard_index"] == shard])
            write_table(table_path(tmp_path, "ledger", shard_key=f"s{shard}", **kw), "ledger",
                        [{"video_id": "v", "content_key": "c", "shard_index": shard}])
        write_table(table_path(tmp_path, "track_map", **kw), "track_map",
                    [{"video_id": "v", "content_key": "c", "raw_track_id": r, "track_id": 1} for r in raw_ids])
        write_table(table_path(tmp_path, "videos", **kw), "videos",
                    [{"video_id": "v", "content_key": "c", "status": "ok", "finished_at": t0 + timedelta(seconds=offset)}])
    out = run_sql(tmp_path, "SELECT track_id, t_first_s, t_last_s, n_detections, config_hash FROM tracks").to_pylist()
    assert out == [{"track_id": 1, "t_first_s": 0.0, "t_last_s": 0.1, "n_detections": 2, "config_hash": "0123456789"}]
    assert run_sql(tmp_path, "SELECT count(*) AS n FROM all_detections").column("n")[0].as_py() == 4


def test_bad_sql_and_missing_lake_are_lake_errors(tmp_path):
    with pytest.raises(LakeError, match="query failed"):
        run_sql(tmp_path, "SELECT nope FROM clips")
    with pytest.raises(LakeError, match="lake not found"):
        run_sql(tmp_path / "missing", "SELECT 1")


def test_a_lake_path_with_glob_characters_reads_that_lake_only(tmp_path):
    from tests.synthetic_lake import write_sharded_video

    for name in ("lake*", "lake[1]", "lake-sibling", "lake1"):  # the same video in each: the same file names
        write_sharded_video(str(tmp_path / name), "a", n_shards=2)
    write_sharded_video(str(tmp_path / "lake-sibling"), "b", n_shards=2)
    count = "SELECT count(*) AS n, count(DISTINCT video_id) AS videos FROM all_detections"
    assert run_sql(tmp_path / "lake-sibling", count).to_pylist() == [{"n": 40, "videos": 2}]
    for name in ("lake*", "lake[1]"):
        assert run_sql(tmp_path / name, count).to_pylist() == [{"n": 20, "videos": 1}], name
