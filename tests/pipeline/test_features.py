import numpy as np
import pytest

from videolake.pipeline.features import FEATURE_NAMES, N_FEATURES, is_fall_class, person_class_ids, track_features

IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _moving_box(n=10, fps=10.0, speed_px_s=100.0, h=100.0, w=40.0):
    t = np.arange(n) / fps
    x = 50 + speed_px_s * t
    return t, np.stack([x, np.full(n, 100.0), x + w, np.full(n, 100.0 + h)], axis=1)


def test_velocity_is_in_box_heights_per_second_whatever_the_frame_rate():
    for fps in (5.0, 25.0):
        t, xyxy = _moving_box(fps=fps, speed_px_s=200.0, h=100.0)
        f = track_features(t, xyxy, np.full(len(t), 0.9), np.zeros(len(t)), 640, 480)
        assert f.shape == (len(t), N_FEATURES)
        assert f[1:, IDX["vx_bh_per_s"]] == pytest.approx(2.0, rel=1e-4)
        assert f[1:, IDX["vy_bh_per_s"]] == pytest.approx(0.0, abs=1e-6)
        assert f[1:, IDX["dt_s"]] == pytest.approx(1 / fps)


def test_first_row_has_zero_rates_and_positions_are_normalised():
    t, xyxy = _moving_box()
    f = track_features(t, xyxy, np.full(len(t), 0.8), np.zeros(len(t)), 640, 480)
    assert np.all(f[0, 4:9] == 0) and f[0, IDX["dt_s"]] == 0
    assert f[0, IDX["cx_norm"]] == pytest.approx(70 / 640)
    assert f[0, IDX["h_norm"]] == pytest.approx(100 / 480)
    assert f[0, IDX["log_aspect"]] == pytest.approx(np.log(0.4))
    assert f[0, IDX["confidence"]] == pytest.approx(0.8)


def test_a_box_that_falls_over_shows_growing_aspect_and_shrinking_height():
    t = np.arange(6) * 0.1
    h = np.linspace(150, 40, 6)
    w = np.linspace(50, 150, 6)
    xyxy = np.stack([100 - w / 2, 300 - h, 100 + w / 2, np.full(6, 300.0)], axis=1)
    f = track_features(t, xyxy, np.ones(6), np.ones(6), 640, 480)
    assert np.all(f[1:, IDX["dlogaspect_per_s"]] > 0)
    assert np.all(f[1:, IDX["dlogh_per_s"]] < 0)


def test_gaps_show_in_dt_and_rates_stay_finite():
    t = np.array([0.0, 0.1, 5.0])
    xyxy = np.array([[0, 0, 10, 20], [0, 0, 10, 20], [500, 0, 510, 1]], dtype=float)
    f = track_features(t, xyxy, np.ones(3), np.zeros(3), 640, 480)
    assert f[2, IDX["dt_s"]] == 2.0  # clipped
    assert np.all(np.isfinite(f)) and np.abs(f[:, 4:9]).max() <= 20


def test_empty_track_gives_empty_features():
    assert track_features(np.zeros(0), np.zeros((0, 4)), np.zeros(0), np.zeros(0), 10, 10).shape == (0, N_FEATURES)


@pytest.mark.parametrize("name, expected", [("Fall", True), ("fallen", True), ("person_down", True), ("Normal", False), ("person", False)])
def test_fall_classes(name, expected):
    assert is_fall_class(name) is expected


def test_person_classes_are_person_where_the_detector_has_it_else_all():
    assert person_class_ids({0: "person", 1: "bicycle", 2: "car"}) == {0}
    assert person_class_ids({0: "Normal", 1: "Fall"}) == {0, 1}
