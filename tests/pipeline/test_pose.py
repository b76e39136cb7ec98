import numpy as np
import pytest

from videolake.pipeline.detect import Detections, Detector
from videolake.pipeline.errors import ModelError
from videolake.pipeline.features import skeleton_ok
from videolake.pipeline.models import default_detector_path, default_pose_path, resolve_pose
from videolake.pipeline.pose import CropBox, PoseEstimator, square_crop
from videolake.pipeline.track import Tracker
from tests.media import footage_path, frames_at, real_frames


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


def test_a_turned_crop_turns_the_box_and_maps_its_points_back_to_the_frame():
    image = np.zeros((100, 200, 3), np.uint8)
    image[30:40, 95:105] = 255  # the top of the box
    xyxy = np.array([90, 30, 110, 70])
    upright, _ = square_crop(image, xyxy, 64, margin=0.25)
    left, box = square_crop(image, xyxy, 64, margin=0.25, quarter_turns=1)  # anticlockwise: the top goes left
    right, back = square_crop(image, xyxy, 64, margin=0.25, quarter_turns=-1)
    np.testing.assert_array_equal(left, np.rot90(upright))
    np.testing.assert_array_equal(right, np.rot90(upright, -1))
    assert left[32, :20].max() == 255 and left[32, 44:].max() == 0
    assert right[32, 44:].max() == 255 and right[32, :20].max() == 0
    # The box, 20 wide and 40 tall, is 40 wide and 20 tall in a turned crop, still centred.
    x1, y1, x2, y2 = box.to_crop(xyxy)
    assert (x2 - x1, y2 - y1) == pytest.approx((40 / box.scale, 20 / box.scale)) and (x1 + x2) / 2 == pytest.approx(32)
    points = np.array([[95.0, 31.0], [108.0, 66.0], [90.0, 70.0]])
    for turned in (box, back):  # frame -> crop -> frame is the identity
        inside = np.stack([turned.to_crop([x, y, x, y])[:2] for x, y in points])
        np.testing.assert_allclose(turned.to_frame(inside), points, atol=1e-3)
    assert left[tuple(np.round(box.to_crop([100, 35, 100, 35])[[1, 0]]).astype(int))].tolist() == [255, 255, 255]


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


def test_people_lying_across_the_picture_get_a_skeleton_along_their_body(pose):
    """Real people turned on their side (vtest.avi turned a quarter): the pose model, trained on upright
    people, finds them only in a crop turned to stand them up; the skeleton comes back lying, in frame pixels."""
    vtest = footage_path("vtest.avi")
    assert vtest is not None, "needs OpenCV's vtest.avi in the venv (make install puts it there)"
    frames = [np.ascontiguousarray(np.rot90(f, -1)) for f in frames_at(vtest, 12.0, 20.0, fps=5)]  # clockwise
    detector = Detector(str(default_detector_path()), imgsz=640, conf=0.25, device="cpu")
    tracker = Tracker(fps=5)
    tracked = [tracker.update(d, f) for f, d in zip(frames, detector(frames))]
    posed = pose(frames, tracked, person_ids={0, 1})
    lying = usable = 0
    for dets in posed:
        wide = (dets.xyxy[:, 2] - dets.xyxy[:, 0]) > 1.5 * (dets.xyxy[:, 3] - dets.xyxy[:, 1])
        ok = skeleton_ok(dets.keypoints, dets.pose_confidence)
        for i in np.flatnonzero(wide & (dets.tracker_id >= 0)):
            lying += 1
            if ok[i]:
                usable += 1
                kp = dets.keypoints[i]
                shoulders, hips = kp[[5, 6], :2].mean(0), kp[[11, 12], :2].mean(0)
                assert abs(shoulders[0] - hips[0]) > abs(shoulders[1] - hips[1])  # the torso lies across the picture
                x1, y1, x2, y2 = dets.xyxy[i]
                assert x1 - 10 <= hips[0] <= x2 + 10 and y1 - 10 <= hips[1] <= y2 + 10
    assert lying >= 10 and usable >= 0.8 * lying, (usable, lying)
