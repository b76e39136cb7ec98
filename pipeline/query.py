"""SQL over the lake with DuckDB, through the Delta tables' Arrow datasets (no DuckDB extension).

Default views show, for each video, its latest finished analysis (latest config):

    detections, clips, videos, tracks, failed, runs, shards

Every config's rows stay reachable through ``all_detections``, ``all_clips``, ``all_videos``
(the Delta tables themselves); ``ledger`` lists the committed shards and ``track_map`` the
stitched track ids. Each table is read at one version: a commit that lands meanwhile is
seen whole by the next connection, never in part.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa

from videolake.pipeline.errors import LakeError
from videolake.pipeline.lake import PUBLISHED, Lake, published_schema

__all__ = ["connect", "run_sql", "describe_views", "format_cell", "ViewInfo", "VIEWS"]

VIEWS = ("detections", "clips", "videos", "tracks", "failed", "runs", "shards",
         "all_detections", "all_clips", "all_videos", "ledger", "track_map",
         "action_episodes", "track_dwell", "first_actions")

_VIEWS_SQL = """
CREATE VIEW all_detections AS SELECT {detections} FROM _raw_detections;
CREATE VIEW all_clips AS SELECT {clips} FROM _raw_clips;
CREATE VIEW all_videos AS SELECT {videos} FROM _raw_videos;
CREATE VIEW runs AS SELECT {runs} FROM _raw_runs;
CREATE VIEW shards AS SELECT {shards} FROM _raw_shards;
CREATE VIEW ledger AS
    SELECT video_id, content_key, config_hash, shard_index, t_start_s, t_end_s, frames_analyzed, run_id, committed_at
    FROM shards WHERE status = 'ok';
CREATE VIEW track_map AS
    SELECT DISTINCT video_id, content_key, config_hash, raw_track_id, track_id FROM all_detections
    WHERE raw_track_id IS NOT NULL;
CREATE VIEW videos AS
    SELECT * FROM all_videos QUALIFY row_number() OVER (PARTITION BY video_id ORDER BY finished_at DESC) = 1;
CREATE VIEW failed AS
    SELECT video_id, uri, error_kind, error, content_key, config_hash, run_id, finished_at FROM videos WHERE status = 'failed';
CREATE VIEW _current AS
    SELECT video_id, config_hash FROM all_videos WHERE status = 'ok'
    QUALIFY row_number() OVER (PARTITION BY video_id ORDER BY finished_at DESC) = 1;
CREATE VIEW detections AS SELECT d.* FROM all_detections d SEMI JOIN _current c USING (video_id, config_hash);
CREATE VIEW clips AS SELECT k.* FROM all_clips k SEMI JOIN _current c USING (video_id, config_hash);
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


def connect(lake: str | os.PathLike[str] | Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the lake's views (a local path, a bucket URL or a ``Lake``).

    Each Delta table is registered as the Arrow dataset of its current version (DuckDB scans it
    lazily, with projection and filter pushdown), so no DuckDB extension has to be downloaded and
    DuckDB never sees the lake's path: one with glob characters (``*``, ``?``, ``[``) is never
    expanded into a sibling lake. Raises ``NotALakeError`` when ``lake`` holds none, and a one-line
    ``LakeError`` when a table cannot be read.
    """
    lake = lake if isinstance(lake, Lake) else Lake.open(lake)
    con = duckdb.connect()
    try:
        _create_views(con, lake)
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        con.close()
        raise LakeError(f"cannot read the lake {lake.url}: {_first_line(exc)}") from None
    except BaseException:
        con.close()
        raise
    return con


def _create_views(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    con.execute("SET TimeZone = 'UTC'")  # wall-clock times show, and text timestamps parse, in UTC
    columns = {}
    for name in PUBLISHED:
        con.register(f"_raw_{name}", lake.dataset(name))
        # The views list the columns in the order of ``SCHEMAS``, whatever order the table has them in.
        present = {c[0] for c in con.execute(f"DESCRIBE _raw_{name}").fetchall()}
        columns[name] = ", ".join(f'"{f.name}"' if f.name in present else f'NULL::{_duck(f.type)} AS "{f.name}"'
                                  for f in published_schema(name))
    con.execute(_VIEWS_SQL.format(**columns))
    from videolake.pipeline.sqlpack import register_sql_pack  # the SQL pack: episodes, buckets, dwell, first actions

    register_sql_pack(con)


def _first_line(exc: BaseException) -> str:
    """A DuckDB or Arrow error's first line, without DuckDB's error class prefix (``IO Error: ...``)."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line.split(": ", 1)[1] if line.split(": ", 1)[0].endswith("Error") and ": " in line else line


def _duck(kind: pa.DataType) -> str:
    """DuckDB's name for an Arrow type (for a column a table does not have yet)."""
    con = duckdb.connect()
    try:
        con.register("t", pa.table({"c": pa.nulls(0, kind)}))
        return con.execute("DESCRIBE t").fetchall()[0][1]
    finally:
        con.close()


def run_sql(lake: str | os.PathLike[str] | Lake, sql: str) -> pa.Table:
    lake = lake if isinstance(lake, Lake) else Lake.open(lake)
    con = connect(lake)
    try:
        relation = con.sql(sql)
        return relation.fetch_arrow_table() if relation is not None else pa.table({})
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        raise _read_error(lake, exc) or LakeError(f"query failed: {_first_line(exc)}") from None
    finally:
        con.close()


def describe_views(lake: str | os.PathLike[str] | Lake) -> list[ViewInfo]:
    lake = lake if isinstance(lake, Lake) else Lake.open(lake)
    con = connect(lake)
    try:
        out = []
        for name in VIEWS:
            rows = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            columns = [(c[0], c[1]) for c in con.execute(f"DESCRIBE {name}").fetchall()]
            out.append(ViewInfo(name, int(rows), columns))
        return out
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        raise _read_error(lake, exc) or LakeError(f"cannot read the lake {lake.url}: {_first_line(exc)}") from None
    finally:
        con.close()


# DuckDB's wrapping of an error raised while it scans a table's Arrow dataset (a damaged or missing file).
_SCAN_ERROR = re.compile(r"reading the stream registered as '_raw_(?P<table>\w+)' failed: (?:\w+: )?(?P<reason>.*)")


def _read_error(lake: Lake, exc: BaseException) -> LakeError | None:
    """A one-line ``LakeError`` naming the table and file when ``exc`` is a file of the lake that cannot be
    read (not the query's fault); ``None`` otherwise."""
    found = _SCAN_ERROR.search(_first_line(exc))
    if found:
        return LakeError(f"cannot read the lake {lake.url}: table {found['table']}: {found['reason']}")
    if isinstance(exc, (pa.ArrowException, OSError, duckdb.IOException)):
        return LakeError(f"cannot read the lake {lake.url}: {_first_line(exc)}")
    return None


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
