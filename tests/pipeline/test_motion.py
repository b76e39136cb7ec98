import numpy as np
import pytest

from videolake.pipeline.motion import IDENTITY, CameraMotion, CameraPose, stabilize
from tests.media import real_frames


def _pan(frame: np.ndarray, steps: int, dx_px: int, size=(360, 200)) -> list[np.ndarray]:
    """A camera panning right over a still real scene: each crop starts ``dx_px`` further right."""
    w, h = size
    return [frame[40 : 40 + h, 20 + i * dx_px : 20 + i * dx_px + w].copy() for i in range(steps)]


def test_a_pan_over_a_still_scene_is_measured_in_frame_pixels():
    scene = real_frames("bikes.mp4", limit=1, size=(1280, 544))[0]
    motion = CameraMotion()
    poses = [motion.update(f) for f in _pan(scene, 8, dx_px=6)]
    assert poses[0] == IDENTITY and motion.failed_steps == 0
    assert poses[-1].x_px == pytest.approx(-6 * 7, abs=2.0)  # the scene moves left as the camera pans right
    assert poses[-1].y_px == pytest.approx(0, abs=1.5) and poses[-1].scale == pytest.approx(1.0, abs=0.01)


def test_a_zoom_is_a_scale():
    import cv2

    scene = real_frames("bikes.mp4", limit=1)[0]
    h, w = scene.shape[:2]
    frames = []
    for i in range(5):
        s = 1.03 ** i
        m = np.array([[s, 0, (1 - s) * w / 2], [0, s, (1 - s) * h / 2]], np.float32)
        frames.append(cv2.warpAffine(scene, m, (w, h)))
    motion = CameraMotion()
    last = [motion.update(f) for f in frames][-1]
    assert last.scale == pytest.approx(1.03 ** 4, rel=0.01)
    # The image centre stays put: stabilizing it gives it back.
    np.testing.assert_allclose(stabilize(np.array([[w / 2, h / 2]]), np.array([[last.scale, last.x_px, last.y_px]])),
                               [[w / 2, h / 2]], atol=2.0)


def test_a_still_camera_stays_at_the_identity_and_a_featureless_frame_is_no_step():
    scene = real_frames("carphone_pristine.mp4", limit=1)[0]
    motion = CameraMotion()
    for _ in range(4):
        pose = motion.update(scene)
    assert pose.scale == pytest.approx(1.0, abs=1e-3) and abs(pose.x_px) < 0.5 and abs(pose.y_px) < 0.5
    blank = CameraMotion()
    for _ in range(3):
        assert blank.update(np.full((120, 160, 3), 90, np.uint8)) == IDENTITY
    assert blank.failed_steps == 2


def test_poses_compose_and_stabilize_inverts_them():
    pose = CameraPose().then(2.0, 10.0, 0.0).then(1.0, 5.0, -3.0)
    assert (pose.scale, pose.x_px, pose.y_px) == (2.0, 15.0, -3.0)
    reference = np.array([[4.0, 7.0]])
    frame = reference * pose.scale + [pose.x_px, pose.y_px]
    np.testing.assert_allclose(stabilize(frame, np.array([[pose.scale, pose.x_px, pose.y_px]])), reference)
