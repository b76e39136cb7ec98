"""SQL over the lake with DuckDB.

Default views show, for each video, its latest finished analysis (latest content and
config), with track ids stitched across shards:

    detections, clips, videos, tracks, failed, runs, shards

Every committed row of every config and content version stays reachable through
``all_detections``, ``all_clips``, ``all_videos`` (and ``ledger``, ``track_map``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from videolake.pipeline import storage
from videolake.pipeline.compact import lake_files
from videolake.pipeline.errors import LakeError
from videolake.pipeline.lake import SCHEMAS

__all__ = ["connect", "run_sql", "describe_views", "format_cell", "ViewInfo", "VIEWS"]

_UNPARTITIONED = ("runs", "shards")
VIEWS = ("detections", "clips", "videos", "tracks", "failed", "runs", "shards",
         "all_detections", "all_clips", "all_videos", "ledger", "track_map",
         "action_episodes", "track_dwell", "first_actions")

_VIEWS_SQL = """
CREATE VIEW all_detections AS
    SELECT d.* FROM _raw_detections d SEMI JOIN _raw_ledger l USING (video_id, content_key, config_hash, shard_index);
CREATE VIEW all_clips AS
    SELECT c.* FROM _raw_clips c SEMI JOIN _raw_ledger l USING (video_id, content_key, config_hash, shard_index);
CREATE VIEW all_videos AS SELECT * FROM _raw_videos;
CREATE VIEW ledger AS SELECT * FROM _raw_ledger;
CREATE VIEW track_map AS SELECT * FROM _raw_track_map;
CREATE VIEW runs AS SELECT * FROM _raw_runs;
CREATE VIEW shards AS SELECT * FROM _raw_shards;
CREATE VIEW videos AS
    SELECT * FROM _raw_videos QUALIFY row_number() OVER (PARTITION BY video_id ORDER BY finished_at DESC) = 1;
CREATE VIEW failed AS
    SELECT video_id, uri, error_kind, error, content_key, config_hash, run_id, finished_at FROM videos WHERE status = 'failed';
CREATE VIEW _current AS
    SELECT video_id, content_key, config_hash FROM _raw_videos WHERE status = 'ok'
    QUALIFY row_number() OVER (PARTITION BY video_id ORDER BY finished_at DESC) = 1;
CREATE VIEW detections AS
    SELECT d.* REPLACE (coalesce(m.track_id, d.track_id) AS track_id), d.track_id AS raw_track_id
    FROM all_detections d
    JOIN _current c ON d.video_id = c.video_id AND d.content_key = c.content_key AND d.config_hash = c.config_hash
    LEFT JOIN _raw_track_map m ON m.video_id = d.video_id AND m.content_key = d.content_key
        AND m.config_hash = d.config_hash AND m.raw_track_id = d.track_id;
CREATE VIEW clips AS
    SELECT k.* REPLACE (coalesce(m.track_id, k.track_id) AS track_id), k.track_id AS raw_track_id
    FROM all_clips k
    JOIN _current c ON k.video_id = c.video_id AND k.content_key = c.content_key AND k.config_hash = c.config_hash
    LEFT JOIN _raw_track_map m ON m.video_id = k.video_id AND m.content_key = k.content_key
        AND m.config_hash = k.config_hash AND m.raw_track_id = k.track_id;
CREATE VIEW tracks AS
    SELECT video_id, config_hash, track_id,
           min(t_s) AS t_first_s, max(t_s) AS t_last_s, count(*) AS n_detections, mode(class_name) AS class_name
    FROM detections WHERE track_id IS NOT NULL
    GROUP BY video_id, config_hash, track_id;
"""


@dataclass(frozen=True)
class ViewInfo:
    name: str
    rows: int
    columns: list[tuple[str, str]]


def connect(lake: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the lake's views (a local path or a bucket URL).

    A local lake is read by DuckDB itself; a bucket lake through Arrow datasets over fsspec
    (DuckDB scans them lazily, with projection and filter pushdown), so no DuckDB extension
    has to be downloaded. So is a local lake whose path has glob characters (``*``, ``?``, ``[``):
    DuckDB would expand them and read a sibling lake too.
    """
    lake = storage.normalize(lake)
    if not storage.exists(lake) or (not storage.is_remote(lake) and not Path(lake).is_dir()):
        raise LakeError(f"lake not found: {lake}")
    con = duckdb.connect()
    try:
        _create_views(con, lake)
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        con.close()
        raise LakeError(f"cannot read the lake {lake}: {_first_line(exc)}") from None
    return con


def _create_views(con: duckdb.DuckDBPyConnection, lake: str) -> None:
    for table, schema in SCHEMAS.items():
        files = lake_files(lake, table)
        if table not in _UNPARTITIONED:
            schema = schema.append(pa.field("config_hash", pa.string()))
        if files and (storage.is_remote(lake) or any(c in lake for c in "*?[")):  # DuckDB would glob such a path
            con.register(f"_ds_{table}", _arrow_dataset(lake, table, files, schema))
            con.execute(f"CREATE VIEW _raw_{table} AS SELECT * FROM _ds_{table}")
        elif files:
            listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(
                f"CREATE VIEW _raw_{table} AS SELECT * FROM read_parquet([{listing}], "
                "hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
            )
        else:
            con.register(f"_empty_{table}", schema.empty_table())
            con.execute(f"CREATE VIEW _raw_{table} AS SELECT * FROM _empty_{table}")
    con.execute(_VIEWS_SQL)
    from videolake.pipeline.sqlpack import register_sql_pack  # the SQL pack: episodes, buckets, dwell, first actions

    register_sql_pack(con)


def _first_line(exc: BaseException) -> str:
    """A DuckDB or Arrow error's first line, without DuckDB's error class prefix (``IO Error: ...``)."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line.split(": ", 1)[1] if line.split(": ", 1)[0].endswith("Error") and ": " in line else line


def _arrow_dataset(lake: str, table: str, files: list[str], schema: pa.Schema) -> ds.Dataset:
    fs, base = storage.arrow_fs(storage.join(lake, table))
    partitioning = None if table in _UNPARTITIONED else ds.partitioning(pa.schema([("config_hash", pa.string())]), flavor="hive")
    return ds.dataset([storage.arrow_fs(f)[1] for f in files], schema=schema, format="parquet", filesystem=fs,
                      partitioning=partitioning, partition_base_dir=base)


def run_sql(lake: str | os.PathLike[str], sql: str) -> pa.Table:
    con = connect(lake)
    try:
        relation = con.sql(sql)
        return relation.fetch_arrow_table() if relation is not None else pa.table({})
    except (duckdb.Error, pa.ArrowException) as exc:
        raise LakeError(f"query failed: {_first_line(exc)}") from None
    finally:
        con.close()


def describe_views(lake: str | os.PathLike[str]) -> list[ViewInfo]:
    con = connect(lake)
    try:
        out = []
        for name in VIEWS:
            rows = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            columns = [(c[0], c[1]) for c in con.execute(f"DESCRIBE {name}").fetchall()]
            out.append(ViewInfo(name, int(rows), columns))
        return out
    except (duckdb.Error, pa.ArrowException) as exc:
        raise LakeError(f"cannot read the lake {lake}: {_first_line(exc)}") from None
    finally:
        con.close()


def format_cell(value: object) -> str:
    """A query result value as text for tables (CLI and HTML report)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list):
        return "[" + ", ".join(format_cell(v) for v in value) + "]"
    return str(value)
