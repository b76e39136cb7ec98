import numpy as np
import pytest

from videolake.pipeline.detect import Detections, Detector
from videolake.pipeline.errors import ModelError
from videolake.pipeline.features import skeleton_ok
from videolake.pipeline.models import default_detector_path, default_pose_path, resolve_pose
from videolake.pipeline.pose import CropBox, PoseEstimator, square_crop
from videolake.pipeline.track import Tracker
from tests.media import real_frames


def test_a_crop_maps_frame_pixels_to_crop_pixels_and_back():
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 90:110] = 255
    crop, box = square_crop(image, np.array([90, 30, 110, 70]), 64, margin=0.25)
    assert crop.shape == (64, 64, 3) and isinstance(box, CropBox)
    assert box.scale == pytest.approx(60 / 64)  # the longer side (40 px) plus a quarter of it on each side
    assert (box.x0_px, box.y0_px) == (70, 20)
    np.testing.assert_allclose(box.to_crop(np.array([90, 30, 110, 70])), np.array([20, 10, 40, 50]) / box.scale, atol=1e-4)
    np.testing.assert_allclose(box.to_frame(np.array([[10.0, 20.0]])), [[70 + 10 * box.scale, 20 + 20 * box.scale]], atol=1e-4)
    assert crop[32, 32].tolist() == [255, 255, 255]  # the box's centre is the crop's centre
    corner, _ = square_crop(image, np.array([0, 0, 10, 10]), 32, margin=1.0)
    assert corner[0, 0].tolist() == [114, 114, 114]  # outside the frame: grey, as Ultralytics pads


@pytest.fixture(scope="module")
def pose():
    return PoseEstimator(str(default_pose_path()), imgsz=192, device="cpu")


@pytest.fixture(scope="module")
def tracked_bikes():
    """Tracked detections of real frames of bikes.mp4 (a cyclist, then a pedestrian's legs)."""
    detector = Detector(str(default_detector_path()), imgsz=640, conf=0.25, device="cpu")
    tracker = Tracker(fps=25)
    frames = real_frames("bikes.mp4", limit=140)[100:140]
    return frames, [tracker.update(d, f) for f, d in zip(frames, detector(frames))]


def test_tracked_people_get_keypoints_inside_their_box_and_the_rest_zeros(pose, tracked_bikes):
    frames, tracked = tracked_bikes
    posed = pose(frames, tracked, person_ids={0, 1})
    assert len(posed) == len(frames)
    found = 0
    for before, after in zip(tracked, posed):
        assert after.keypoints.shape == (len(before), 17, 3) and np.array_equal(after.xyxy, before.xyxy)
        for i in range(len(after)):
            if before.tracker_id[i] < 0:
                assert after.pose_confidence[i] == 0 and not after.keypoints[i].any()
            elif after.pose_confidence[i] > 0:
                found += 1
                seen = after.keypoints[i, :, 2] >= 0.5
                x1, y1, x2, y2 = after.xyxy[i]
                centre = after.keypoints[i, seen, :2].mean(axis=0)  # the skeleton is the boxed person's, in frame pixels
                assert abs(centre[0] - (x1 + x2) / 2) < 0.5 * max(x2 - x1, y2 - y1)
                assert abs(centre[1] - (y1 + y2) / 2) < 0.5 * max(x2 - x1, y2 - y1)
    assert found >= 20  # the cyclist is in most of these frames
    ok = np.concatenate([skeleton_ok(p.keypoints, p.pose_confidence) for p in posed])
    assert ok.sum() >= 15


def test_no_tracked_person_means_no_pose_work(pose):
    frame = real_frames("carphone_pristine.mp4", limit=1)
    (out,) = pose(frame, [Detections.empty()], person_ids={0})
    assert out.keypoints.shape == (0, 17, 3) and out.pose_confidence.shape == (0,)


def test_a_detect_model_is_refused_as_a_pose_model():
    with pytest.raises(ModelError, match="not a pose model"):
        PoseEstimator(str(default_detector_path()), imgsz=192)


def test_a_pose_model_as_the_detector_brings_its_own_keypoints():
    detector = Detector(str(default_pose_path()), imgsz=320, conf=0.25, device="cpu")
    assert detector.has_keypoints and detector.names == {0: "person"}
    (dets,) = detector(real_frames("carphone_pristine.mp4", limit=1))
    assert len(dets) >= 1 and dets.keypoints.shape == (len(dets), 17, 3)
    np.testing.assert_allclose(dets.pose_confidence, dets.confidence)


def test_pose_weights_resolve_by_name_none_or_path(tmp_path):
    assert resolve_pose("none") is None
    default = resolve_pose("default")
    assert default.path.endswith("yolo11n-pose.pt") and len(default.sha256) == 64
    with pytest.raises(ModelError, match="pose weights not found"):
        resolve_pose(str(tmp_path / "missing-pose.pt"))
