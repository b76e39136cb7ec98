"""SQL over the lake with DuckDB: one view per table, plus ``tracks``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.errors import LakeError
from pipeline.lake import SCHEMAS

__all__ = ["connect", "run_sql", "describe_views", "ViewInfo"]

_PARTITIONED = ("detections", "clips", "videos")

_TRACKS_SQL = """
CREATE VIEW tracks AS
SELECT video_id, config_hash, track_id,
       min(t_s) AS t_first_s, max(t_s) AS t_last_s, count(*) AS n_detections,
       mode(class_name) AS class_name
FROM detections
WHERE track_id IS NOT NULL
GROUP BY video_id, config_hash, track_id
"""


@dataclass(frozen=True)
class ViewInfo:
    name: str
    rows: int
    columns: list[tuple[str, str]]


def connect(lake: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views over the lake's Parquet files."""
    root = Path(lake)
    if not root.is_dir():
        raise LakeError(f"lake not found: {root}")
    con = duckdb.connect()
    for table, schema in SCHEMAS.items():
        files = list((root / table).rglob("*.parquet")) if (root / table).is_dir() else []
        if files:
            pattern = str(root / table / "**" / "*.parquet").replace("'", "''")
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{pattern}', "
                "hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
            )
        else:
            if table in _PARTITIONED:
                schema = schema.append(pa.field("config_hash", pa.string()))
            con.register(f"_empty_{table}", schema.empty_table())
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")
    con.execute(_TRACKS_SQL)
    return con


def run_sql(lake: str | os.PathLike[str], sql: str) -> pa.Table:
    con = connect(lake)
    try:
        relation = con.sql(sql)
        return relation.fetch_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as exc:
        raise LakeError(f"query failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def describe_views(lake: str | os.PathLike[str]) -> list[ViewInfo]:
    con = connect(lake)
    try:
        out = []
        for name in (*SCHEMAS, "tracks"):
            rows = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            columns = [(c[0], c[1]) for c in con.execute(f"DESCRIBE {name}").fetchall()]
            out.append(ViewInfo(name, int(rows), columns))
        return out
    finally:
        con.close()
