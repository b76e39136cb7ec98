import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline.errors import LakeError
from pipeline.lake import SCHEMA_VERSION, SCHEMAS, ParquetSink, check_writable, table_path, write_table


def test_every_table_has_a_schema_with_the_contract_columns():
    assert {"detections", "clips", "videos", "runs", "ledger", "track_map", "shards"} <= set(SCHEMAS)
    assert {"video_id", "frame_index", "t_s", "track_id", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2",
            "run_id"} <= set(SCHEMAS["detections"].names)
    assert {"clip_index", "t_start_s", "t_end_s", "action", "action_confidence", "action_probs", "n_frames"} <= set(SCHEMAS["clips"].names)
    assert {"status", "error", "duration_s", "fps", "width", "height", "codec", "frames_analyzed"} <= set(SCHEMAS["videos"].names)
    assert {"started_at", "finished_at", "config", "config_hash", "detector", "action_model", "wall_s"} <= set(SCHEMAS["runs"].names)


def test_paths_are_deterministic_from_video_content_shard_and_config(tmp_path):
    kw = dict(config_hash="abc", video_id="v1", content_key="ck")
    assert table_path(tmp_path, "clips", shard_key="s00001-x", **kw) == tmp_path / "clips" / "config_hash=abc" / "v1" / "ck-s00001-x.parquet"
    assert table_path(tmp_path, "videos", **kw) == tmp_path / "videos" / "config_hash=abc" / "v1" / "ck.parquet"
    assert table_path(tmp_path, "runs", run_id="r1") == tmp_path / "runs" / "r1.parquet"
    assert table_path(tmp_path, "shards", run_id="r1", video_id="v1") == tmp_path / "shards" / "r1" / "v1.parquet"
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
            assert not path.exists()  # nothing visible before close
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
    assert rows == [("v", "failed", "bad", "h")] and path.is_file()


def test_unwritable_lake_fails_early_naming_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LakeError, match=str(blocker)):
        check_writable(blocker / "lake")
