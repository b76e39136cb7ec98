import os

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from videolake.pipeline.errors import LakeError
from videolake.pipeline.lake import SCHEMA_VERSION, SCHEMAS, ParquetSink, check_writable, table_path, write_table


def test_every_table_has_a_schema_with_the_contract_columns():
    assert {"detections", "clips", "videos", "runs", "ledger", "track_map", "shards"} <= set(SCHEMAS)
    assert {"video_id", "frame_index", "t_s", "track_id", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2",
            "run_id"} <= set(SCHEMAS["detections"].names)
    assert {"clip_index", "t_start_s", "t_end_s", "action", "action_confidence", "action_probs", "n_frames"} <= set(SCHEMAS["clips"].names)
    assert {"status", "error", "duration_s", "fps", "width", "height", "codec", "frames_analyzed"} <= set(SCHEMAS["videos"].names)
    assert {"started_at", "finished_at", "config", "config_hash", "detector", "action_model", "wall_s"} <= set(SCHEMAS["runs"].names)


def test_paths_are_deterministic_from_video_content_shard_and_config(tmp_path):
    kw = dict(config_hash="abc", video_id="v1", content_key="ck")
    assert table_path(tmp_path, "clips", shard_key="s00001-x", **kw) == str(tmp_path / "clips" / "config_hash=abc" / "v1" / "ck-s00001-x.parquet")
    assert table_path(tmp_path, "videos", **kw) == str(tmp_path / "videos" / "config_hash=abc" / "v1" / "ck.parquet")
    assert table_path(tmp_path, "runs", run_id="r1") == str(tmp_path / "runs" / "r1.parquet")
    assert table_path(tmp_path, "shards", run_id="r1", video_id="v1") == str(tmp_path / "shards" / "r1" / "v1.parquet")
    with pytest.raises(LakeError):
        table_path(tmp_path, "clips", config_hash="abc", video_id="v1")


def test_sink_streams_row_groups_and_stamps_the_schema_version(tmp_path):
    path = table_path(tmp_path, "clips", config_hash="h", video_id="v", content_key="c", shard_key="s0")
    with ParquetSink(path, "clips", row_group_rows=10) as sink:
        for start in range(0, 35, 5):
            n = 5
            sink.write({"video_id": ["v"] * n, "content_key": ["c"] * n, "shard_index": [0] * n, "clip_index": list(range(start, start + n)), "t_start_s": [0.0] * n,
                        "t_end_s": [2.0] * n, "track_id": [1] * n, "action": ["walking"] * n,
                        "action_confidence": [0.5] * n, "action_probs": [[0.1, 0.9]] * n, "n_frames": [4] * n,
                        "run_id": ["r"] * n})
            assert not os.path.exists(path)  # nothing visible before close
    meta = pq.ParquetFile(path)
    assert meta.metadata.num_rows == 35 and meta.metadata.num_row_groups >= 3
    assert meta.schema_arrow.metadata[b"videolake.schema_version"] == SCHEMA_VERSION.encode()
    table = ds.dataset(tmp_path / "clips", partitioning="hive").to_table()
    assert table.num_rows == 35 and set(table.column("config_hash").to_pylist()) == {"h"}


def test_a_failed_write_leaves_no_file_behind(tmp_path):
    path = table_path(tmp_path, "runs", run_id="r")
    with pytest.raises(RuntimeError):
        with ParquetSink(path, "runs", row_group_rows=1) as sink:
            sink.write({f.name: [None] for f in SCHEMAS["runs"]})
            raise RuntimeError("crash mid-write")
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_small_tables_are_written_atomically_and_read_by_duckdb(tmp_path):
    path = write_table(table_path(tmp_path, "videos", config_hash="h", video_id="v", content_key="c"), "videos",
                       [{"video_id": "v", "uri": "/x.mp4", "status": "failed", "error": "bad", "run_id": "r"}])
    rows = duckdb.sql(f"SELECT video_id, status, error, config_hash FROM read_parquet('{tmp_path}/videos/**/*.parquet', hive_partitioning=true)").fetchall()
    assert rows == [("v", "failed", "bad", "h")] and os.path.isfile(path)


def test_unwritable_lake_fails_early_naming_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LakeError, match=str(blocker)):
        check_writable(blocker / "lake")


def test_compaction_merges_finished_videos_files_without_changing_query_results(tmp_path):
    from videolake.pipeline.compact import compact, lake_files
    from videolake.pipeline.query import run_sql
    from tests.synthetic_lake import write_sharded_video

    for v in range(3):  # v2 is still being analysed: its shard files must stay for the stitch step
        write_sharded_video(tmp_path, f"v{v}", n_shards=4, finished=v < 2)
    query = "SELECT video_id, count(*) AS n, sum(frame_index) AS f FROM all_detections GROUP BY 1 ORDER BY 1"
    before = run_sql(tmp_path, query).to_pylist()
    report = compact(tmp_path)
    assert (report.files_before, report.files_after, report.rows) == (8, 1, 80)
    assert run_sql(tmp_path, query).to_pylist() == before
    files = lake_files(tmp_path, "detections")
    merged = [p for p in files if os.path.basename(p).startswith("compact-")]
    assert len(files) == 5 and len(merged) == 1 and pq.ParquetFile(merged[0]).metadata.num_rows == 80


def test_an_interrupted_compaction_never_shows_rows_twice(tmp_path):
    import json
    import shutil

    from videolake.pipeline.compact import compact, lake_files

    kw = dict(config_hash="h", video_id="v", content_key="c")
    for shard in range(2):
        write_table(table_path(tmp_path, "detections", shard_key=f"s{shard}", **kw), "detections",
                    [{"video_id": "v", "content_key": "c", "shard_index": shard, "frame_index": shard}])
    inputs = [os.path.relpath(p, tmp_path) for p in lake_files(tmp_path, "detections")]
    # Simulate a crash after the merged file appeared and before the inputs were deleted.
    out = tmp_path / "detections" / "config_hash=h" / "compact-x.parquet"
    shutil.copy(tmp_path / inputs[0], out)
    (tmp_path / "_compactions").mkdir()
    (tmp_path / "_compactions" / "x.json").write_text(json.dumps({"output": str(out.relative_to(tmp_path)), "inputs": inputs}))
    assert [os.path.basename(p) for p in lake_files(tmp_path, "detections")] == ["compact-x.parquet"]
    compact(tmp_path)  # finishes the interrupted one
    assert not (tmp_path / "_compactions" / "x.json").exists() and not (tmp_path / inputs[1]).exists()
