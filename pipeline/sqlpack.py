"""The SQL pack: views and macros for the questions people ask the lake most.

Registered on every connection by ``videolake.pipeline.query.connect``:

- ``action_episodes`` (view): consecutive clips of one track with the same action merged
  into one row with ``t_start_s``, ``t_end_s``, ``duration_s``, the wall-clock ``ts`` of its
  start, ``n_clips`` and the mean and highest confidence (``action_episodes()`` computes the
  same rows for one video's clips in memory: a run's alert events come from it).
- ``actions_per_bucket(bucket_s)`` (table macro): clips and distinct tracks per action in
  time buckets of ``bucket_s`` seconds (a clip counts in the bucket its start falls in).
- ``track_dwell`` (view): how long each track stays in view (first to last detection),
  with its most frequent known action.
- ``first_actions`` (view): the first clip of each action in each video, and its track.
- ``camera_detections(camera, t_from, t_to)`` and ``camera_clips(camera, t_from, t_to)``
  (table macros): what a camera saw in a wall-clock range ``[t_from, t_to)`` (timestamps or
  text such as ``'2026-05-01 14:32'``, UTC unless an offset is given; ``camera`` NULL for all
  cameras). A clip counts when its span overlaps the range. Only videos whose start time is
  known (``recorded_at``) have wall-clock times.
- ``actions_per_camera(bucket)`` (table macro): clips and distinct tracks per camera, action
  and wall-clock bucket (an ``INTERVAL``, default one hour).

Every result keeps ``config_hash``: results of different configurations or models never mix.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

__all__ = ["SQL_PACK", "SQL_PACK_NAMES", "EPISODES_SQL", "register_sql_pack", "action_episodes"]

SQL_PACK_NAMES = ("action_episodes", "actions_per_bucket", "track_dwell", "first_actions",
                  "camera_detections", "camera_clips", "actions_per_camera")

# Consecutive clips of one track with the same action, as one row: over a relation named ``clips``
# with the lake's columns (the ``clips`` view, or one video's clips before they are published).
EPISODES_SQL = """
WITH numbered AS (
    SELECT config_hash, video_id, camera_id, track_id, action, clip_index, t_start_s, t_end_s, ts, action_confidence,
           clip_index - row_number() OVER (PARTITION BY config_hash, video_id, track_id, action ORDER BY clip_index) AS island
    FROM clips
    WHERE track_id IS NOT NULL
)
SELECT config_hash, video_id, camera_id, track_id, action,
       min(t_start_s) AS t_start_s, max(t_end_s) AS t_end_s, max(t_end_s) - min(t_start_s) AS duration_s,
       min(ts) AS ts, count(*) AS n_clips, min(clip_index) AS first_clip_index,
       avg(action_confidence) AS mean_confidence, max(action_confidence) AS max_confidence
FROM numbered
GROUP BY config_hash, video_id, camera_id, track_id, action, island
"""

_SQL_PACK = """
CREATE OR REPLACE VIEW action_episodes AS {episodes};

CREATE OR REPLACE MACRO actions_per_bucket(bucket_s := 10.0) AS TABLE
SELECT config_hash, video_id,
       floor(t_start_s / bucket_s) * bucket_s AS bucket_start_s,
       action, count(*) AS n_clips, count(DISTINCT track_id) AS n_tracks
FROM clips
GROUP BY ALL
ORDER BY config_hash, video_id, bucket_start_s, action;

CREATE OR REPLACE VIEW track_dwell AS
SELECT t.config_hash, t.video_id, t.track_id, t.class_name,
       t.t_first_s, t.t_last_s, t.t_last_s - t.t_first_s AS dwell_s, t.n_detections,
       c.main_action, coalesce(c.n_clips, 0) AS n_clips
FROM tracks t
LEFT JOIN (
    SELECT config_hash, video_id, track_id,
           mode(action) FILTER (WHERE action <> 'unknown') AS main_action, count(*) AS n_clips
    FROM clips
    GROUP BY ALL
) c USING (config_hash, video_id, track_id);

CREATE OR REPLACE VIEW first_actions AS
SELECT config_hash, video_id, action, t_start_s AS first_t_s, track_id AS first_track_id, action_confidence
FROM clips
WHERE action <> 'unknown'
QUALIFY row_number() OVER (PARTITION BY config_hash, video_id, action ORDER BY t_start_s, track_id) = 1;

CREATE OR REPLACE MACRO camera_detections(camera, t_from, t_to) AS TABLE
SELECT * FROM detections
WHERE (camera IS NULL OR camera_id = camera)
  AND ts >= CAST(t_from AS TIMESTAMPTZ) AND ts < CAST(t_to AS TIMESTAMPTZ)
ORDER BY ts, video_id, track_id;

CREATE OR REPLACE MACRO camera_clips(camera, t_from, t_to) AS TABLE
SELECT * FROM clips
WHERE (camera IS NULL OR camera_id = camera)
  AND ts < CAST(t_to AS TIMESTAMPTZ)
  AND ts + to_microseconds(CAST(round((t_end_s - t_start_s) * 1e6) AS BIGINT)) > CAST(t_from AS TIMESTAMPTZ)
ORDER BY ts, video_id, track_id;

CREATE OR REPLACE MACRO actions_per_camera(bucket := INTERVAL 1 HOUR) AS TABLE
SELECT config_hash, camera_id, time_bucket(bucket, ts) AS bucket_start, action,
       count(*) AS n_clips, count(DISTINCT (video_id, track_id)) AS n_tracks
FROM clips
WHERE ts IS NOT NULL
GROUP BY ALL
ORDER BY config_hash, camera_id, bucket_start, action;
"""


SQL_PACK = _SQL_PACK.replace("{episodes}", EPISODES_SQL.strip())


def action_episodes(clips: pa.Table) -> pa.Table:
    """The episodes (``EPISODES_SQL``) of ``clips``, an Arrow table with the lake's clip columns, ordered by time."""
    con = duckdb.connect()
    try:
        con.register("clips", clips)
        return con.sql(f"SELECT * FROM ({EPISODES_SQL}) ORDER BY t_start_s, track_id").fetch_arrow_table()
    finally:
        con.close()


def register_sql_pack(con: duckdb.DuckDBPyConnection) -> None:
    """Create the pack's views and macros on ``con`` (which must already have ``clips`` and ``tracks``)."""
    for statement in SQL_PACK.split(";"):
        if statement.strip():
            con.execute(statement)
