import numpy as np
import pytest

from videolake.pipeline.features import (
    FEATURE_NAMES, N_FEATURES, TrackSeries, person_class_ids, skeleton_ok, track_features, window_features,
)

IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _moving_box(n=10, fps=10.0, speed_px_s=100.0, h=100.0, w=40.0):
    t = np.arange(n) / fps
    x = 50 + speed_px_s * t
    return t, np.stack([x, np.full(n, 100.0), x + w, np.full(n, 100.0 + h)], axis=1)


# A standing person seen from the front, in torso lengths from the mid-hip (image y points down).
_BODY = {0: (0, -1.45), 1: (-0.1, -1.5), 2: (0.1, -1.5), 3: (-0.2, -1.45), 4: (0.2, -1.45), 5: (-0.33, -1), 6: (0.33, -1),
         7: (-0.4, -0.5), 8: (0.4, -0.5), 9: (-0.43, -0.07), 10: (0.43, -0.07), 11: (-0.23, 0), 12: (0.23, 0),
         13: (-0.23, 0.83), 14: (0.23, 0.83), 15: (-0.23, 1.67), 16: (0.23, 1.67)}


def _upright(x0=100.0, y0=160.0, torso=30.0, conf=0.9):
    """COCO keypoints (17, 3) in pixels of that person, mid-hip at (x0, y0), straight legs."""
    kp = np.zeros((17, 3), np.float32)
    for j, (x, y) in _BODY.items():
        kp[j] = (x0 + x * torso, y0 + y * torso, conf)
    return kp


def _box(kp):
    return np.array([[kp[:, 0].min() - 5, kp[:, 1].min() - 8, kp[:, 0].max() + 5, kp[:, 1].max() + 3]], np.float32)


def _rotate(kp, degrees, about):
    a = np.radians(degrees)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    out = kp.copy()
    out[:, :2] = (kp[:, :2] - about) @ r.T + about
    return out


def test_velocity_is_in_box_heights_per_second_whatever_the_frame_rate():
    for fps in (5.0, 25.0):
        t, xyxy = _moving_box(fps=fps, speed_px_s=200.0, h=100.0)
        f = track_features(t, xyxy, np.full(len(t), 0.9), None, None, 640, 480)
        assert f.shape == (len(t), N_FEATURES)
        assert f[1:, IDX["vx_bh_per_s"]] == pytest.approx(2.0, rel=1e-4)
        assert f[1:, IDX["vy_bh_per_s"]] == pytest.approx(0.0, abs=1e-6)
        assert f[1:, IDX["dt_s"]] == pytest.approx(1 / fps)


def test_a_still_persons_jitter_cancels_in_the_net_speed_a_walkers_does_not():
    rng = np.random.default_rng(0)
    t, still = _moving_box(n=17, fps=8.0, speed_px_s=0.0, h=100.0)
    still = still + rng.normal(0, 4.0, still.shape)  # a detector's box: a few pixels of noise each frame
    f = track_features(t, still, np.full(len(t), 0.9), None, None, 640, 480)
    assert f[1:, IDX["speed_bh_per_s"]].mean() > 0.3  # frame to frame, noise reads as motion ...
    assert f[-1, IDX["net_speed_bh_per_s"]] < 0.08    # ... over the window it cancels
    t, walker = _moving_box(n=17, fps=8.0, speed_px_s=60.0, h=100.0)
    f = track_features(t, walker + rng.normal(0, 4.0, walker.shape), np.full(len(t), 0.9), None, None, 640, 480)
    assert f[-1, IDX["net_speed_bh_per_s"]] == pytest.approx(0.6, abs=0.08)
    assert np.all(f[1:4, IDX["net_speed_bh_per_s"]] == 0)  # under 0.4 s: not measured yet


def test_a_pan_reads_as_camera_speed_not_as_the_persons_motion():
    t, xyxy = _moving_box(n=9, fps=8.0, speed_px_s=-96.0, h=100.0)  # a still person drifting left in the image ...
    camera = np.column_stack([np.ones(len(t)), -96.0 * t, np.zeros(len(t))])  # ... because the camera pans right
    f = track_features(t, xyxy, np.full(len(t), 0.9), None, None, 640, 480, camera)
    assert f[1:, IDX["camera_speed"]] == pytest.approx(96.0 / 480, rel=1e-3)
    assert f[-1, IDX["net_speed_bh_per_s"]] == pytest.approx(0.0, abs=1e-6)
    assert np.all(track_features(t, xyxy, np.full(len(t), 0.9), None, None, 640, 480)[:, IDX["camera_speed"]] == 0)


def test_box_only_features_leave_every_pose_feature_zero():
    t, xyxy = _moving_box()
    f = track_features(t, xyxy, np.full(len(t), 0.8), None, None, 640, 480)
    pose = [i for n, i in IDX.items() if n.startswith(("pose", "nose", "l_", "r_", "torso", "hip_", "ankle", "dtorso", "dhip", "dankle"))]
    assert np.all(f[:, pose] == 0)
    assert f[0, IDX["h_norm"]] == pytest.approx(100 / 480) and f[0, IDX["log_aspect"]] == pytest.approx(np.log(0.4))
    assert f[0, IDX["confidence"]] == pytest.approx(0.8) and f[0, IDX["dt_s"]] == 0


def test_keypoints_are_relative_to_the_hips_in_torso_lengths_whatever_the_size():
    rows = []
    for torso in (15.0, 60.0):  # the same body, four times bigger
        kp = _upright(torso=torso)
        rows.append(track_features(np.zeros(1), _box(kp), np.ones(1), kp[None], np.ones(1), 640, 480)[0])
    small, big = rows
    assert small[IDX["pose_ok"]] == 1 and big[IDX["pose_ok"]] == 1
    for name in ("l_shoulder_y", "l_knee_y", "l_ankle_y", "hip_above_ankles", "torso_cos", "l_knee_angle"):
        assert small[IDX[name]] == pytest.approx(big[IDX[name]], abs=0.02), name
    assert big[IDX["l_shoulder_y"]] == pytest.approx(-1.0, abs=0.05)  # one torso above the hips (image y points down)
    assert big[IDX["hip_above_ankles"]] == pytest.approx(1.67, abs=0.05)
    assert big[IDX["l_knee_angle"]] == pytest.approx(1.0, abs=0.01)  # a straight leg: pi / pi
    assert big[IDX["torso_cos"]] == pytest.approx(1.0, abs=0.01) and big[IDX["torso_sin"]] == pytest.approx(0.0, abs=0.01)


def test_a_body_lying_down_reads_as_a_horizontal_torso_with_hips_level_with_the_ankles():
    lying = _rotate(_upright(), 90, about=np.array([100.0, 160.0]))
    f = track_features(np.zeros(1), _box(lying), np.ones(1), lying[None], np.ones(1), 640, 480)[0]
    assert f[IDX["pose_ok"]] == 1
    assert abs(f[IDX["torso_sin"]]) == pytest.approx(1.0, abs=0.01) and f[IDX["torso_cos"]] == pytest.approx(0.0, abs=0.01)
    assert abs(f[IDX["hip_above_ankles"]]) < 0.1


def test_falling_shows_as_torso_rotation_per_second():
    t = np.arange(5) * 0.125
    frames = np.stack([_rotate(_upright(), a, about=np.array([100.0, 210.0])) for a in np.linspace(0, 80, 5)])
    boxes = np.concatenate([_box(k) for k in frames])
    f = track_features(t, boxes, np.ones(5), frames, np.ones(5), 640, 480)
    assert np.all(f[1:, IDX["dtorso_per_s"]] == pytest.approx(np.radians(20) / 0.125, rel=0.05))


@pytest.mark.parametrize("case", ["scrambled", "few", "no_person", "no_hips"])
def test_a_skeleton_is_evidence_only_when_plausible(case):
    kp = _upright()
    conf = 0.9
    if case == "scrambled":  # knees and ankles above the shoulders: not a body
        kp[[13, 14, 15, 16], 1] -= 100
    elif case == "few":
        kp[7:, 2] = 0.1
    elif case == "no_person":
        conf = 0.0
    else:
        kp[[11, 12], 2] = 0.2
    assert skeleton_ok(_upright()[None], np.array([0.9]))[0]
    assert not skeleton_ok(kp[None], np.array([conf]))[0]


def test_a_frame_without_a_skeleton_has_zero_pose_features_and_no_pose_rates():
    t = np.arange(3) * 0.1
    kp = np.stack([_upright(), np.zeros((17, 3), np.float32), _upright(x0=110)])
    boxes = np.concatenate([_box(_upright())] * 3)
    f = track_features(t, boxes, np.ones(3), kp, np.array([0.9, 0.0, 0.9]), 640, 480)
    assert f[1, IDX["pose_ok"]] == 0 and f[1, IDX["nose_x"]] == 0 and f[1, IDX["torso_cos"]] == 0
    assert f[1, IDX["hip_speed"]] == 0 and f[2, IDX["hip_speed"]] == 0  # rates only between two skeletons


def test_window_features_carry_rates_from_the_previous_window():
    t, xyxy = _moving_box(n=6)
    track = TrackSeries(t, xyxy, np.ones(6), None, None, 640, 480)
    alone = window_features(track.take(np.arange(3, 6)), None)
    carried = window_features(track.take(np.arange(3, 6)), track.take(np.array([2])))
    assert alone[0, IDX["vx_bh_per_s"]] == 0 and carried[0, IDX["vx_bh_per_s"]] == pytest.approx(1.0)
    rates = [i for n, i in IDX.items() if n != "net_speed_bh_per_s"]  # the net speed is the window's own, from its first row
    np.testing.assert_allclose(carried[:, rates], track.features()[3:, rates])


def test_gaps_show_in_dt_and_rates_stay_finite():
    t = np.array([0.0, 0.1, 5.0])
    xyxy = np.array([[0, 0, 10, 20], [0, 0, 10, 20], [500, 0, 510, 1]], dtype=float)
    f = track_features(t, xyxy, np.ones(3), None, None, 640, 480)
    assert f[2, IDX["dt_s"]] == 2.0  # clipped
    assert np.all(np.isfinite(f)) and np.abs(f).max() <= 20


def test_empty_track_gives_empty_features():
    assert track_features(np.zeros(0), np.zeros((0, 4)), np.zeros(0), None, None, 10, 10).shape == (0, N_FEATURES)


def test_person_classes_are_person_where_the_detector_has_it_else_all():
    assert person_class_ids({0: "person", 1: "bicycle", 2: "car"}) == {0}
    assert person_class_ids({0: "Normal", 1: "Fall"}) == {0, 1}
