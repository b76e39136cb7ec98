"""The SQL pack: action episodes, actions per time bucket, dwell per track, first time each action appears."""

import pytest

from videolake.pipeline.lake import Lake
from videolake.pipeline.query import connect, run_sql
from videolake.pipeline.sqlpack import SQL_PACK_NAMES
from tests.real_lake import real_lake
from tests.synthetic_lake import publish_video

H = "00000000000000aa"


def _clip(video, k, track, action, conf=0.9):
    return {"video_id": video, "clip_index": k, "t_start_s": 2.0 * k, "t_end_s": 2.0 * (k + 1), "track_id": track,
            "action": action, "action_confidence": None if action == "unknown" else conf,
            "action_probs": None, "n_frames": 8, "run_id": "r"}


def _det(video, t, track):
    return {"video_id": video, "content_key": "c", "shard_index": 0, "frame_index": int(t * 10), "t_s": t, "track_id": track,
            "class_id": 0, "class_name": "Normal",
            "confidence": 0.9, "x1": 0, "y1": 0, "x2": 10, "y2": 20, "run_id": "r"}


@pytest.fixture
def lake(tmp_path):
    # Track 1: walk walk run walk | (no clip 4) | walk unknown; track 2: standing from 4 s on.
    actions_1 = {0: "walking", 1: "walking", 2: "running", 3: "walking", 5: "walking", 6: "unknown"}
    clips = [_clip("v", k, 1, a, 0.8 if k == 1 else 0.9) for k, a in actions_1.items()]
    clips += [_clip("v", k, 2, "standing") for k in (2, 3)]
    dets = [_det("v", t, 1) for t in (0.1, 3.0, 13.5)] + [_det("v", t, 2) for t in (4.2, 7.7)] + [_det("v", 5.0, None)]
    publish_video(tmp_path, "v", config_hash=H, detections=dets, clips=clips)
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


def test_one_videos_episodes_in_memory_are_the_views_rows_and_alerts_keep_falling_and_lying(lake):
    from videolake.pipeline.sqlpack import action_episodes
    from videolake.pipeline.stitch import alert_episodes

    clips = run_sql(lake, "SELECT * FROM clips")
    columns = "config_hash, video_id, camera_id, track_id, action, t_start_s, t_end_s, duration_s, ts, n_clips, mean_confidence"
    view = run_sql(lake, f"SELECT {columns} FROM action_episodes ORDER BY t_start_s, track_id").to_pylist()
    assert action_episodes(clips).select(columns.split(", ")).to_pylist() == view
    assert alert_episodes(clips, "v.mp4") == []  # walking, running, standing: nothing to alert on
    falls = clips.set_column(clips.column_names.index("action"), "action",
                             [["falling" if a == "running" else "lying" if a == "standing" else a
                               for a in clips["action"].to_pylist()]])
    alerts = alert_episodes(falls, "v.mp4")
    assert [(e.track_id, e.action, e.t_start_s, e.t_end_s, e.n_clips, e.uri) for e in alerts] == [
        (1, "falling", 4.0, 6.0, 1, "v.mp4"), (2, "lying", 4.0, 8.0, 2, "v.mp4")]


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
    Lake.open_or_create(tmp_path)
    con = connect(tmp_path)
    try:
        calls = {"actions_per_bucket": "(10)", "actions_per_camera": "()",
                 "camera_detections": "(NULL, '2026-01-01', '2026-01-02')", "camera_clips": "('cam', '2026-01-01', '2026-01-02')"}
        for name in SQL_PACK_NAMES:
            assert con.execute(f"SELECT count(*) FROM {name}{calls.get(name, '')}").fetchone() == (0,)
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


def test_camera_and_wall_clock_macros_answer_what_happened_on_a_camera_at_a_time(tmp_path):
    from datetime import datetime, timezone

    start = datetime(2026, 5, 1, 14, 30, tzinfo=timezone.utc)
    clips = [_clip("a", k, 1, a) for k, a in enumerate(["walking", "walking", "running", "falling"])]
    dets = [_det("a", t, 1) for t in (0.5, 3.0, 5.5, 7.9)]
    lake = publish_video(tmp_path, "a", config_hash=H, detections=dets, clips=clips,
                         video={"camera_id": "cam3", "recorded_at": start})
    publish_video(lake, "b", config_hash=H, detections=[_det("b", 1.0, 1)], clips=[_clip("b", 0, 1, "walking")],
                  video={"camera_id": "cam4", "recorded_at": start})
    publish_video(lake, "untimed", config_hash=H, detections=[_det("untimed", 1.0, 1)], video={"camera_id": "cam3"})
    # 14:30:04.5-14:30:06: clip 2 (4-6 s) overlaps; clip 3 starts at 6 s, outside; one detection at 5.5 s.
    got = run_sql(lake.url, "SELECT clip_index, action, ts FROM camera_clips('cam3', '2026-05-01 14:30:04.5', "
                            "'2026-05-01 14:30:06')").to_pylist()
    assert [(r["clip_index"], r["action"]) for r in got] == [(2, "running")]
    assert got[0]["ts"] == datetime(2026, 5, 1, 14, 30, 4, tzinfo=timezone.utc)
    dets_in_range = run_sql(lake.url, "SELECT video_id, t_s FROM camera_detections('cam3', TIMESTAMPTZ '2026-05-01 14:30:04.5+00', "
                                      "'2026-05-01 14:30:06')").to_pylist()
    assert dets_in_range == [{"video_id": "a", "t_s": 5.5}]
    every_camera = run_sql(lake.url, "SELECT DISTINCT camera_id FROM camera_detections(NULL, '2026-05-01', '2026-05-02') ORDER BY 1")
    assert every_camera.column(0).to_pylist() == ["cam3", "cam4"]  # the untimed video has no wall-clock time
    per_camera = run_sql(lake.url, "SELECT camera_id, bucket_start, action, n_clips FROM actions_per_camera(INTERVAL 1 HOUR)")
    assert {(r["camera_id"], r["action"]): r["n_clips"] for r in per_camera.to_pylist()} == {
        ("cam3", "walking"): 2, ("cam3", "running"): 1, ("cam3", "falling"): 1, ("cam4", "walking"): 1}
    assert {r["bucket_start"] for r in per_camera.to_pylist()} == {datetime(2026, 5, 1, 14, tzinfo=timezone.utc)}
