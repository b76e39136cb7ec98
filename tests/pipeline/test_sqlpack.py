"""The SQL pack: action episodes, actions per time bucket, dwell per track, first time each action appears."""

import pytest

from videolake.pipeline.lake import table_path, write_table
from videolake.pipeline.query import connect, run_sql
from videolake.pipeline.sqlpack import SQL_PACK_NAMES
from tests.real_lake import real_lake

H = "00000000000000aa"


def _clip(video, k, track, action, conf=0.9):
    return {"video_id": video, "clip_index": k, "t_start_s": 2.0 * k, "t_end_s": 2.0 * (k + 1), "track_id": track,
            "action": action, "action_confidence": None if action == "unknown" else conf,
            "action_probs": None, "n_frames": 8, "run_id": "r"}


def _det(video, t, track):
    return {"video_id": video, "content_key": "c", "shard_index": 0, "frame_index": int(t * 10), "t_s": t, "track_id": track, "class_id": 0, "class_name": "Normal",
            "confidence": 0.9, "x1": 0, "y1": 0, "x2": 10, "y2": 20, "run_id": "r"}


@pytest.fixture
def lake(tmp_path):
    # Track 1: walk walk run walk | (no clip 4) | walk unknown; track 2: standing from 4 s on.
    actions_1 = {0: "walking", 1: "walking", 2: "running", 3: "walking", 5: "walking", 6: "unknown"}
    clips = [_clip("v", k, 1, a, 0.8 if k == 1 else 0.9) for k, a in actions_1.items()]
    clips += [_clip("v", k, 2, "standing") for k in (2, 3)]
    keys = dict(config_hash=H, video_id="v", content_key="c")
    for clip in clips:
        clip.update(content_key="c", shard_index=0)
    write_table(table_path(tmp_path, "clips", shard_key="s0", **keys), "clips", clips)
    dets = [_det("v", t, 1) for t in (0.1, 3.0, 13.5)] + [_det("v", t, 2) for t in (4.2, 7.7)] + [_det("v", 5.0, None)]
    write_table(table_path(tmp_path, "detections", shard_key="s0", **keys), "detections", dets)
    write_table(table_path(tmp_path, "ledger", shard_key="s0", **keys), "ledger", [{"video_id": "v", "content_key": "c", "shard_index": 0}])
    write_table(table_path(tmp_path, "videos", **keys), "videos", [{"video_id": "v", "content_key": "c", "status": "ok"}])
    return tmp_path


def test_episodes_merge_consecutive_clips_of_a_track_with_the_same_action(lake):
    rows = run_sql(lake, "SELECT track_id, action, t_start_s, t_end_s, duration_s, n_clips, round(mean_confidence, 3) AS c "
                         "FROM action_episodes ORDER BY track_id, t_start_s").to_pylist()
    assert [(r["track_id"], r["action"], r["t_start_s"], r["t_end_s"], r["duration_s"], r["n_clips"]) for r in rows] == [
        (1, "walking", 0.0, 4.0, 4.0, 2),   # clips 0-1
        (1, "running", 4.0, 6.0, 2.0, 1),
        (1, "walking", 6.0, 8.0, 2.0, 1),   # clip 3; clip 4 missing breaks the episode
        (1, "walking", 10.0, 12.0, 2.0, 1),  # clip 5
        (1, "unknown", 12.0, 14.0, 2.0, 1),
        (2, "standing", 4.0, 8.0, 4.0, 2),
    ]
    assert rows[0]["c"] == pytest.approx(0.85)


@pytest.mark.parametrize("bucket_s, expected", [
    (4, {(0.0, "walking"): (2, 1), (4.0, "running"): (1, 1), (4.0, "standing"): (2, 1), (4.0, "walking"): (1, 1),
         (8.0, "walking"): (1, 1), (12.0, "unknown"): (1, 1)}),
    (60, {(0.0, "walking"): (4, 1), (0.0, "running"): (1, 1), (0.0, "standing"): (2, 1), (0.0, "unknown"): (1, 1)}),
])
def test_actions_per_bucket_counts_clips_and_tracks(lake, bucket_s, expected):
    rows = run_sql(lake, f"SELECT * FROM actions_per_bucket({bucket_s})").to_pylist()
    assert {(r["bucket_start_s"], r["action"]): (r["n_clips"], r["n_tracks"]) for r in rows} == expected
    assert {r["config_hash"] for r in rows} == {H}


def test_track_dwell_and_first_actions(lake):
    dwell = run_sql(lake, "SELECT track_id, dwell_s, n_detections, main_action, n_clips FROM track_dwell ORDER BY 1").to_pylist()
    assert dwell == [
        {"track_id": 1, "dwell_s": pytest.approx(13.4), "n_detections": 3, "main_action": "walking", "n_clips": 6},
        {"track_id": 2, "dwell_s": pytest.approx(3.5), "n_detections": 2, "main_action": "standing", "n_clips": 2},
    ]
    first = run_sql(lake, "SELECT action, first_t_s, first_track_id FROM first_actions ORDER BY first_t_s, action").to_pylist()
    assert first == [{"action": "walking", "first_t_s": 0.0, "first_track_id": 1},
                     {"action": "running", "first_t_s": 4.0, "first_track_id": 1},
                     {"action": "standing", "first_t_s": 4.0, "first_track_id": 2}]  # unknown is never an action seen


def test_an_empty_lake_has_the_pack_too(tmp_path):
    con = connect(tmp_path)
    try:
        for name in SQL_PACK_NAMES:
            sql = f"SELECT count(*) FROM {name}(10)" if name == "actions_per_bucket" else f"SELECT count(*) FROM {name}"
            assert con.execute(sql).fetchone() == (0,)
    finally:
        con.close()


def test_on_the_real_sample_lake_episodes_account_for_every_tracked_clip(samples_dir):
    lake = real_lake(samples_dir).path
    totals = run_sql(lake, "SELECT (SELECT sum(n_clips) FROM action_episodes) AS episodes, "
                           "(SELECT count(*) FROM clips WHERE track_id IS NOT NULL) AS clips, "
                           "(SELECT sum(n_clips) FROM actions_per_bucket(5)) AS bucketed, "
                           "(SELECT count(*) FROM track_dwell) AS dwell, (SELECT count(*) FROM tracks) AS tracks").to_pylist()[0]
    assert totals["episodes"] == totals["clips"] == totals["bucketed"] > 0
    assert totals["dwell"] == totals["tracks"] > 0
