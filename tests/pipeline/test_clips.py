import numpy as np
import pytest

from videolake.pipeline.actions import ACTIONS, ActionLSTM, ActionModel
from videolake.pipeline.clips import ClipAccumulator, Evidence, clip_bounds, clip_evidence, clip_index
from videolake.pipeline.detect import Detections
from videolake.pipeline.features import TrackSeries
from tests.pipeline.test_features import _upright


@pytest.mark.parametrize(
    "t_s, clip_seconds, expected",
    [(0.0, 2.0, 0), (1.999, 2.0, 0), (2.0, 2.0, 1), (5.9, 2.0, 2), (0.3, 0.1, 3), (6.0, 1.5, 4)],
)
def test_clip_index_aligns_windows_to_the_video_start(t_s, clip_seconds, expected):
    assert clip_index(t_s, clip_seconds) == expected
    start, end = clip_bounds(expected, clip_seconds)
    assert start <= t_s + 1e-9 < end + 1e-9


@pytest.fixture(scope="module")
def model():
    import torch

    torch.manual_seed(0)
    return ActionModel(ActionLSTM(n_classes=len(ACTIONS)), ACTIONS)  # untrained: these tests are about the bookkeeping


def _window(n, skeletons, pose_confidence=0.9):
    """``n`` detections of one track, the first ``skeletons`` of them with a plausible skeleton."""
    kp = np.stack([_upright() if i < skeletons else np.zeros((17, 3), np.float32) for i in range(n)])
    conf = np.array([pose_confidence if i < skeletons else 0.0 for i in range(n)], np.float32)
    return TrackSeries(np.arange(n) * 0.125, np.array([[70, 100, 130, 220]] * n, np.float32), np.full(n, 0.8, np.float32),
                       kp, conf, 640, 480)


@pytest.mark.parametrize("n, skeletons, pose_confidence, expected", [
    (16, 16, 0.9, Evidence.ENOUGH),
    (16, 9, 0.9, Evidence.ENOUGH),          # half or more of the frames show a body
    (16, 6, 0.9, Evidence.NOT_A_PERSON),    # mostly nothing the pose model takes for a person
    (16, 0, 0.0, Evidence.NOT_A_PERSON),    # e.g. a patch of a car window
    (3, 3, 0.9, Evidence.UNKNOWN),          # a person, but too few frames to say what they do
    (6, 3, 0.9, Evidence.ENOUGH),           # half the frames with a usable skeleton
    (16, 16, 0.3, Evidence.NOT_A_PERSON),   # skeletons the pose model itself doubts (a cartoon rabbit)
])
def test_clip_evidence_decides_between_no_row_unknown_and_a_guess(n, skeletons, pose_confidence, expected):
    assert clip_evidence(_window(n, skeletons, pose_confidence), min_frames=4) is expected


def test_a_confident_person_without_a_usable_skeleton_is_unknown_not_dropped():
    """A seated person seen from the chest up: the pose model is sure of a person but sees no hips."""
    w = _window(16, 16, pose_confidence=0.92)
    w.keypoints[:, 11:, 2] = 0.1  # hips, knees, ankles unseen
    assert clip_evidence(w, min_frames=4) is Evidence.UNKNOWN


@pytest.mark.parametrize("cut, expected", [(0, Evidence.ENOUGH), (7, Evidence.ENOUGH), (8, Evidence.PARTIAL), (16, Evidence.PARTIAL)])
def test_a_box_the_frame_cuts_in_half_its_frames_is_partial_evidence(cut, expected):
    """A person entering at the frame's edge: the box widens and shortens as a fall's would."""
    w = _window(16, 16, 0.9)
    w.xyxy[:cut, 2] = 636  # a few pixels short of the right edge: boxes of a body leaving rarely reach it
    assert clip_evidence(w, min_frames=4) is expected
    assert expected.classified
    w.xyxy[:cut, 2], w.xyxy[:cut, 1] = 630, 1  # the top edge instead
    assert clip_evidence(w, min_frames=4) is expected
    box_only = TrackSeries(w.t_s, w.xyxy, w.confidence, None, None, 640, 480)
    assert clip_evidence(box_only, min_frames=4) is expected


def test_box_only_results_decide_on_the_number_of_detections():
    box_only = TrackSeries(np.arange(5) * 0.1, np.array([[10, 10, 20, 40]] * 5, np.float32), np.ones(5, np.float32), None, None, 64, 64)
    assert clip_evidence(box_only, 4) is Evidence.ENOUGH
    assert clip_evidence(box_only.take(np.arange(3)), 4) is Evidence.UNKNOWN


def _dets(boxes, ids, cls=0, skeleton=True):
    n = len(boxes)
    kp = np.stack([_upright(x0=(b[0] + b[2]) / 2, y0=b[1] + 60) if skeleton else np.zeros((17, 3)) for b in boxes]) if n else np.zeros((0, 17, 3))
    return Detections(np.array(boxes, dtype=np.float32).reshape(-1, 4), np.full(n, 0.9), np.full(n, cls), np.array(ids),
                      kp, np.full(n, 0.9 if skeleton else 0.0))


def test_each_track_gets_one_row_per_clip_window_it_appears_in(model):
    acc = ClipAccumulator(model, 1.0, 640, 480, person_class_ids={0}, with_pose=True, min_frames=3)
    rows = []
    for i in range(30):  # 3 s at 10 fps; track 1 throughout, track 2 only in the middle second
        t = i / 10
        boxes, ids = [[100 + i, 100, 140 + i, 220]], [1]
        if 10 <= i < 20:
            boxes.append([300, 100, 340, 220])
            ids.append(2)
        if i == 25:
            boxes.append([400, 100, 440, 220])
            ids.append(3)  # one frame only: unknown
        rows += acc.add(t, _dets(boxes, ids))
    rows += acc.finish()
    keys = [(r.clip_index, r.track_id) for r in rows]
    assert sorted(keys) == [(0, 1), (1, 1), (1, 2), (2, 1), (2, 3)]
    by_key = {(r.clip_index, r.track_id): r for r in rows}
    assert by_key[(0, 1)].n_frames == 10 and by_key[(0, 1)].n_pose_frames == 10
    assert by_key[(0, 1)].t_start_s == 0.0 and by_key[(0, 1)].t_end_s == 1.0
    unknown = by_key[(2, 3)]
    assert unknown.action == "unknown" and unknown.action_probs is None and unknown.n_frames == 1
    known = by_key[(1, 2)]
    assert known.action in ACTIONS and len(known.action_probs) == len(ACTIONS)
    assert sum(known.action_probs) == pytest.approx(1.0, abs=1e-3)


def test_a_tracked_box_that_shows_no_person_gets_no_row(model):
    acc = ClipAccumulator(model, 1.0, 640, 480, person_class_ids={0}, with_pose=True)
    rows = []
    for i in range(10):
        rows += acc.add(i / 10, _dets([[100, 100, 140, 220]], [7], skeleton=False))
    assert rows + acc.finish() == []


def test_untracked_and_non_person_detections_get_no_clips(model):
    acc = ClipAccumulator(model, 1.0, 640, 480, person_class_ids={0}, with_pose=True)
    rows = []
    for i in range(10):
        rows += acc.add(i / 10, _dets([[0, 0, 10, 20], [50, 50, 60, 70]], [-1, 5], cls=2))
    assert rows + acc.finish() == []


def test_box_only_runs_give_every_tracked_person_a_row(model):
    acc = ClipAccumulator(model, 1.0, 640, 480, person_class_ids={0}, with_pose=False)
    rows = []
    for i in range(10):
        rows += acc.add(i / 10, Detections(np.array([[100, 100, 140, 220]], np.float32), [0.9], [0], [4]))
    (row,) = rows + acc.finish()
    assert row.action in ACTIONS and row.n_pose_frames is None


def test_state_of_old_tracks_is_dropped_so_memory_stays_bounded(model):
    acc = ClipAccumulator(model, 1.0, 640, 480, person_class_ids={0}, with_pose=True)
    for i in range(600):  # a new short-lived track every second for 60 s
        acc.add(i / 10, _dets([[10, 10, 50, 130]], [i // 10]))
    assert len(acc._previous) <= 2 and len(acc._tracks) <= 2
