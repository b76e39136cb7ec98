import pytest

from pipeline.errors import LakeError
from pipeline.lake import table_path, write_table
from pipeline.query import describe_views, run_sql


def test_an_empty_lake_still_has_every_view_with_its_columns(tmp_path):
    views = {v.name: v for v in describe_views(tmp_path)}
    assert set(views) == {"detections", "clips", "videos", "runs", "tracks"}
    assert all(v.rows == 0 for v in views.values())
    assert ("config_hash", "VARCHAR") in views["clips"].columns
    assert [c for c, _ in views["tracks"].columns] == ["video_id", "config_hash", "track_id", "t_first_s", "t_last_s",
                                                       "n_detections", "class_name"]


def test_tracks_view_summarises_detections(tmp_path):
    rows = [{"video_id": "v", "frame_index": i, "t_s": i / 10, "track_id": 1 if i < 3 else None, "class_id": 0,
             "class_name": "Normal", "confidence": 0.9, "x1": 0, "y1": 0, "x2": 1, "y2": 1, "run_id": "r"} for i in range(5)]
    write_table(table_path(tmp_path, "detections", "v", "0123456789"), "detections", rows)
    out = run_sql(tmp_path, "SELECT track_id, t_first_s, t_last_s, n_detections, config_hash FROM tracks").to_pylist()
    assert out == [{"track_id": 1, "t_first_s": 0.0, "t_last_s": 0.2, "n_detections": 3, "config_hash": "0123456789"}]


def test_bad_sql_and_missing_lake_are_lake_errors(tmp_path):
    with pytest.raises(LakeError, match="query failed"):
        run_sql(tmp_path, "SELECT nope FROM clips")
    with pytest.raises(LakeError, match="lake not found"):
        run_sql(tmp_path / "missing", "SELECT 1")
