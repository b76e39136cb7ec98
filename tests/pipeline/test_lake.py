import os
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from videolake.pipeline.errors import ConfigError, LakeError, NotALakeError
from videolake.pipeline.lake import (
    MARKER, PUBLISHED, SCHEMA_VERSION, SCHEMAS, Lake, ParquetSink, check_writable, published_schema, table_path,
)
from tests.synthetic_lake import publish_video, write_sharded_video


def _det(frame, track, shard=0, **kw):
    return {"shard_index": shard, "frame_index": frame, "t_s": frame / 10, "track_id": track, "class_id": 0,
            "class_name": "Normal", "confidence": 0.9, "x1": 0, "y1": 0, "x2": 1, "y2": 1, **kw}


def test_every_table_has_a_schema_with_the_contract_columns():
    assert {"detections", "clips", "videos", "runs", "ledger", "overlaps", "shards"} <= set(SCHEMAS)
    assert PUBLISHED == ("videos", "detections", "clips", "runs", "shards")
    assert {"video_id", "frame_index", "t_s", "track_id", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2",
            "run_id"} <= set(SCHEMAS["detections"].names)
    assert {"clip_index", "t_start_s", "t_end_s", "action", "action_confidence", "action_probs", "n_frames"} <= set(SCHEMAS["clips"].names)
    assert {"status", "error", "duration_s", "fps", "width", "height", "codec", "frames_analyzed", "camera_id", "recorded_at",
            "config_hash"} <= set(SCHEMAS["videos"].names)
    assert {"started_at", "finished_at", "config", "config_hash", "detector", "action_model", "wall_s"} <= set(SCHEMAS["runs"].names)
    for table in ("detections", "clips"):  # published = staged + what the driver adds
        assert published_schema(table).names == SCHEMAS[table].names + ["raw_track_id", "camera_id", "ts", "config_hash"]


def test_staging_paths_are_deterministic_from_video_content_shard_and_config(tmp_path):
    kw = dict(config_hash="abc", video_id="v1", content_key="ck")
    assert table_path(tmp_path, "clips", shard_key="s00001-x", **kw) == str(
        tmp_path / "_staging" / "clips" / "config_hash=abc" / "v1" / "ck-s00001-x.parquet")
    with pytest.raises(LakeError, match="shard key"):
        table_path(tmp_path, "clips", config_hash="abc", video_id="v1", content_key="ck")
    with pytest.raises(LakeError, match="no staging files"):
        table_path(tmp_path, "videos", shard_key="s0", **kw)


def test_sink_streams_row_groups_and_stamps_the_schema_version(tmp_path):
    path = table_path(tmp_path, "clips", config_hash="h", video_id="v", content_key="c", shard_key="s0")
    with ParquetSink(path, "clips", row_group_rows=10) as sink:
        for start in range(0, 35, 5):
            n = 5
            sink.write({"video_id": ["v"] * n, "content_key": ["c"] * n, "shard_index": [0] * n,
                        "clip_index": list(range(start, start + n)), "t_start_s": [0.0] * n,
                        "t_end_s": [2.0] * n, "track_id": [1] * n, "action": ["walking"] * n,
                        "action_confidence": [0.5] * n, "action_probs": [[0.1, 0.9]] * n, "n_frames": [4] * n,
                        "run_id": ["r"] * n})
            assert not os.path.exists(path)  # nothing visible before close
    meta = pq.ParquetFile(path)
    assert meta.metadata.num_rows == 35 and meta.metadata.num_row_groups >= 3
    assert meta.schema_arrow.metadata[b"videolake.schema_version"] == SCHEMA_VERSION.encode()


def test_a_failed_write_leaves_no_file_behind(tmp_path):
    path = table_path(tmp_path, "ledger", config_hash="h", video_id="v", content_key="c", shard_key="s0")
    with pytest.raises(RuntimeError):
        with ParquetSink(path, "ledger", row_group_rows=1) as sink:
            sink.write({f.name: [None] for f in SCHEMAS["ledger"]})
            raise RuntimeError("crash mid-write")
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_unwritable_lake_fails_early_naming_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LakeError, match=str(blocker)):
        check_writable(blocker / "lake")


def test_only_run_creates_a_lake_and_a_folder_without_one_is_refused(tmp_path):
    with pytest.raises(NotALakeError, match="not a videolake lake") as info:
        Lake.open(tmp_path / "nothing-here")
    assert isinstance(info.value, ConfigError)  # exit code 2 at the CLI
    assert not (tmp_path / "nothing-here").exists()
    lake = Lake.open_or_create(tmp_path / "lake")
    assert (tmp_path / "lake" / MARKER).is_file() and lake.layout() == 2
    assert all((tmp_path / "lake" / t / "_delta_log").is_dir() for t in PUBLISHED)
    assert Lake.open(tmp_path / "lake").url == lake.url


def test_any_engine_reads_the_rows_videolake_query_shows(tmp_path):
    import polars as pl
    from deltalake import DeltaTable

    # Two shards whose raw ids 1 and 1_000_001 are one person: published with the stitched id 1.
    lake = publish_video(tmp_path, "v", detections=[_det(0, 1), _det(1, 1), _det(20, 1_000_001, shard=1), _det(21, None, shard=1)],
                         track_map={1: 1, 1_000_001: 1})
    publish_video(lake, "w", detections=[_det(0, 7)], track_map={7: 1})
    query = sorted((r["video_id"], r["frame_index"], r["track_id"]) for r in lake.sql(
        "SELECT video_id, frame_index, track_id FROM detections").to_pylist())
    assert query == [("v", 0, 1), ("v", 1, 1), ("v", 20, 1), ("v", 21, None), ("w", 0, 1)]
    by_polars = pl.read_delta(str(tmp_path / "detections")).select("video_id", "frame_index", "track_id").rows()
    by_deltalake = DeltaTable(str(tmp_path / "detections")).to_pyarrow_table(columns=["video_id", "frame_index", "track_id"])
    by_pyarrow = ds.dataset(DeltaTable(str(tmp_path / "detections")).file_uris(), format="parquet").to_table(
        columns=["video_id", "frame_index", "track_id"])
    by_pandas = DeltaTable(str(tmp_path / "detections")).to_pandas()[["video_id", "frame_index", "track_id"]]
    by_pandas = [(v, f, None if t != t else int(t)) for v, f, t in by_pandas.itertuples(index=False)]
    for rows in (by_polars, by_pandas, list(zip(*by_deltalake.to_pydict().values())), list(zip(*by_pyarrow.to_pydict().values()))):
        assert sorted(rows, key=str) == sorted(query, key=str)
    raw = lake.sql("SELECT raw_track_id FROM detections WHERE video_id = 'v' ORDER BY frame_index").column(0).to_pylist()
    assert raw == [1, 1, 1_000_001, None]


def test_reanalysis_replaces_a_videos_rows_and_every_config_stays_queryable(tmp_path):
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    lake = publish_video(tmp_path, "v", config_hash="old", detections=[_det(i, 1) for i in range(3)], video={"finished_at": t0})
    publish_video(lake, "v", config_hash="new", detections=[_det(i, 1) for i in range(5)], video={"finished_at": t0 + timedelta(1)})
    publish_video(lake, "v", config_hash="new", detections=[_det(i, 1) for i in range(4)], video={"finished_at": t0 + timedelta(2)})
    counts = {r["config_hash"]: r["n"] for r in lake.sql("SELECT config_hash, count(*) AS n FROM all_detections GROUP BY 1").to_pylist()}
    assert counts == {"old": 3, "new": 4}  # the second analysis under "new" replaced the first, whole
    assert lake.sql("SELECT count(*) AS n, any_value(config_hash) AS h FROM detections").to_pylist() == [{"n": 4, "h": "new"}]
    assert lake.sql("SELECT count(*) AS n FROM all_videos").column("n")[0].as_py() == 2


def test_a_commit_interrupted_mid_way_is_completed_by_the_next_writer(tmp_path, monkeypatch):
    lake = publish_video(tmp_path, "done", detections=[_det(0, 1)])
    real_write = Lake.write

    def crash_before_the_videos_row(self, name, *args, **kwargs):
        if name == "videos":
            raise KeyboardInterrupt("killed")
        return real_write(self, name, *args, **kwargs)

    monkeypatch.setattr(Lake, "write", crash_before_the_videos_row)
    with pytest.raises(KeyboardInterrupt):
        publish_video(lake, "cut", detections=[_det(0, 1), _det(1, 1)], clips=[])
    monkeypatch.setattr(Lake, "write", real_write)
    # Half done: its detections are committed, its videos row is not; the views show only finished videos.
    assert lake.read("detections").num_rows == 3
    assert lake.sql("SELECT DISTINCT video_id FROM detections").column(0).to_pylist() == ["done"]
    assert list((tmp_path / "_staging" / "commits").rglob("*.json"))
    assert Lake.open_or_create(tmp_path).recover() == 0  # a writer may still be at work: left alone for 5 minutes
    assert lake.sql("SELECT DISTINCT video_id FROM detections").column(0).to_pylist() == ["done"]
    assert Lake.open_or_create(tmp_path).recover(grace_s=0) == 1  # past that, any writer completes it
    assert sorted(lake.sql("SELECT DISTINCT video_id FROM detections").column(0).to_pylist()) == ["cut", "done"]
    assert lake.read("detections").num_rows == 3 and lake.read("videos").num_rows == 2
    assert not list((tmp_path / "_staging").rglob("*.parquet")) and not list((tmp_path / "_staging").rglob("*.json"))


def test_columns_added_to_the_schemas_flow_into_existing_tables_as_null_for_old_rows(tmp_path, monkeypatch):
    current = SCHEMAS["detections"]
    pose_columns = ["kp_x", "kp_y", "kp_conf", "pose_confidence"]
    before_pose = pa.schema([f for f in current if f.name not in pose_columns])  # a lake of schema 1
    monkeypatch.setitem(SCHEMAS, "detections", before_pose)
    lake = publish_video(tmp_path, "before", detections=[_det(0, 1)])
    assert "kp_x" not in lake.table("detections").schema().to_arrow().names
    monkeypatch.setitem(SCHEMAS, "detections", current)
    publish_video(lake, "after", detections=[_det(0, 1, kp_x=[float(i) for i in range(17)])])
    rows = {r["video_id"]: r["kp_x"] for r in lake.sql("SELECT video_id, kp_x FROM detections").to_pylist()}
    assert rows == {"before": None, "after": [float(i) for i in range(17)]}
    assert set(pose_columns) <= set(lake.table("detections").schema().to_arrow().names)


def test_compaction_merges_small_files_and_vacuums_without_changing_query_results(tmp_path):
    from videolake.pipeline.compact import compact, small_file_count

    lake = Lake.open_or_create(tmp_path)
    for v in range(4):
        write_sharded_video(lake, f"v{v}", n_shards=3)
    query = "SELECT video_id, count(*) AS n, sum(frame_index) AS f FROM detections GROUP BY 1 ORDER BY 1"
    before = lake.sql(query).to_pylist()
    assert before == [{"video_id": f"v{v}", "n": 30, "f": 435} for v in range(4)]
    assert small_file_count(lake) == 4
    report = compact(lake, retention_hours=0)
    assert report.files_after < report.files_before and small_file_count(lake) == 1
    assert report.files_vacuumed >= 4
    assert lake.sql(query).to_pylist() == before
    parquet = [p for p in (tmp_path / "detections").rglob("*.parquet") if "_delta_log" not in str(p)]
    assert len(parquet) == 1  # the old small files are gone from disk too


def test_many_videos_published_at_once_are_the_rows_of_one_by_one_in_one_transaction_per_table(tmp_path):
    from deltalake import DeltaTable

    from videolake.pipeline.query import run_sql
    from tests.synthetic_lake import stage_video

    def staged(lake):
        commits = []
        for i in range(6):
            dets = [{"shard_index": s, "frame_index": 10 * s + k, "t_s": s + k / 10, "track_id": s * 1_000_000 + 1, "class_id": 0,
                     "class_name": "Normal", "confidence": 0.9, "x1": i, "y1": 0, "x2": i + 5, "y2": 9} for s in range(2) for k in range(3)]
            clips = [{"shard_index": 0, "clip_index": 0, "t_start_s": 0.0, "t_end_s": 2.0, "track_id": 1, "action": "walking",
                      "action_confidence": 0.8, "n_frames": 3}]
            failed = {"status": "failed", "error": "decode error"} if i == 4 else {}
            commit = stage_video(lake, f"v{i}", content_key=f"c{i}", detections=dets, clips=clips, video=failed,
                                 track_map={1: 1, 1_000_001: 1})
            commit.shards = [{"video_id": f"v{i}", "content_key": f"c{i}", "shard_index": s, "status": "ok", "run_id": "r"} for s in range(2)]
            commits.append(commit)
        return commits

    one, many = Lake.open_or_create(tmp_path / "one"), Lake.open_or_create(tmp_path / "many")
    for commit in staged(one):
        one.commit_video(commit)
    versions = {t: DeltaTable(str(tmp_path / "many" / t)).version() for t in ("detections", "videos")}
    many.commit_videos(staged(many))
    sql = {"detections": "SELECT video_id, frame_index, track_id, raw_track_id, x1 FROM detections ORDER BY ALL",
           "clips": "SELECT video_id, track_id, action FROM clips ORDER BY ALL",
           "videos": "SELECT video_id, status, error FROM videos ORDER BY ALL",
           "shards": "SELECT video_id, shard_index, status FROM shards ORDER BY ALL"}
    for table, query in sql.items():
        assert run_sql(tmp_path / "many", query).to_pylist() == run_sql(tmp_path / "one", query).to_pylist(), table
    assert len(run_sql(tmp_path / "many", sql["detections"])) == 5 * 6 and len(run_sql(tmp_path / "many", sql["videos"])) == 6
    # The five good videos in one transaction per table; the failed one on its own (its shards and videos rows).
    assert DeltaTable(str(tmp_path / "many" / "detections")).version() == versions["detections"] + 1
    assert DeltaTable(str(tmp_path / "many" / "videos")).version() == versions["videos"] + 2
    leftovers = [p for p in (tmp_path / "many" / "_staging").rglob("*") if p.is_file()]
    assert [p.parent.name for p in leftovers if p.suffix == ".parquet"] == ["v4"] * len(leftovers)  # kept for --retry-failed


def test_runs_recorded_before_the_motion_gate_read_null_for_its_columns(tmp_path, monkeypatch):
    current = SCHEMAS["runs"]
    monkeypatch.setitem(SCHEMAS, "runs", pa.schema([f for f in current if f.name not in ("frames_detected", "detector_fraction")]))
    lake = Lake.open_or_create(tmp_path)
    lake.commit_run({"run_id": "before", "frames_analyzed": 10})
    monkeypatch.setitem(SCHEMAS, "runs", current)
    lake.commit_run({"run_id": "after", "frames_analyzed": 10, "frames_detected": 4, "detector_fraction": 0.4})
    rows = {r["run_id"]: (r["frames_detected"], r["detector_fraction"])
            for r in lake.sql("SELECT run_id, frames_detected, detector_fraction FROM runs").to_pylist()}
    assert rows == {"before": (None, None), "after": (4, 0.4)}


def test_videos_found_at_a_new_path_get_it_and_the_lake_still_answers_bound_parameters(tmp_path):
    from types import SimpleNamespace

    from videolake.pipeline.labels import lake_config

    lake = publish_video(tmp_path, "v", detections=[_det(0, 1)], video={"uri": "/old/v.mp4", "size_bytes": 10})
    publish_video(lake, "w", detections=[_det(0, 1)], video={"uri": "/old/w.mp4", "size_bytes": 20})
    lake.record_paths([SimpleNamespace(video_id="v", uri="/new/v.mp4", size_bytes=10, version="2")])
    assert lake.sql("SELECT video_id, uri FROM videos ORDER BY 1").to_pylist() == [
        {"video_id": "v", "uri": "/new/v.mp4"}, {"video_id": "w", "uri": "/old/w.mp4"}]
    for path in lake.table("videos").file_uris():  # written as every other file: no string_view columns
        assert not any(pa.types.is_string_view(f.type) for f in pq.read_schema(path))
    # What labels and render ask: filters with bound parameters, pushed down into the scan.
    con = lake.connect()
    assert lake_config(con, {"v", "w"}).config_hash == "h"
    assert con.execute("SELECT uri FROM videos WHERE video_id = ? AND config_hash = ?", ["v", "h"]).fetchall() == [("/new/v.mp4",)]
