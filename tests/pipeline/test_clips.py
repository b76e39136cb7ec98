import numpy as np
import pytest

from videolake.pipeline.actions import ActionModel
from videolake.pipeline.clips import ClipAccumulator, clip_bounds, clip_index
from videolake.pipeline.detect import Detections
from videolake.pipeline.models import default_actions_path


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
    return ActionModel.load(default_actions_path())


def _dets(boxes, ids, cls=0):
    n = len(boxes)
    return Detections(np.array(boxes, dtype=np.float32).reshape(-1, 4), np.full(n, 0.9), np.full(n, cls), np.array(ids))


def test_each_track_gets_one_row_per_clip_window_it_appears_in(model):
    acc = ClipAccumulator(model, 1.0, 640, 480, person_class_ids={0}, fall_class_ids=set(), min_frames=3)
    rows = []
    for i in range(30):  # 3 s at 10 fps; track 1 throughout, track 2 only in the middle second
        t = i / 10
        boxes, ids = [[100 + i, 100, 140 + i, 200]], [1]
        if 10 <= i < 20:
            boxes.append([300, 100, 340, 200])
            ids.append(2)
        if i == 25:
            boxes.append([400, 100, 440, 200])
            ids.append(3)  # one frame only: unknown
        rows += acc.add(t, _dets(boxes, ids))
    rows += acc.finish()
    keys = [(r.clip_index, r.track_id) for r in rows]
    assert sorted(keys) == [(0, 1), (1, 1), (1, 2), (2, 1), (2, 3)]
    by_key = {(r.clip_index, r.track_id): r for r in rows}
    assert by_key[(0, 1)].n_frames == 10 and by_key[(0, 1)].t_start_s == 0.0 and by_key[(0, 1)].t_end_s == 1.0
    unknown = by_key[(2, 3)]
    assert unknown.action == "unknown" and unknown.action_probs is None and unknown.n_frames == 1
    known = by_key[(1, 2)]
    assert known.action in model.classes and len(known.action_probs) == len(model.classes)
    assert sum(known.action_probs) == pytest.approx(1.0, abs=1e-3)


def test_untracked_and_non_person_detections_get_no_clips(model):
    acc = ClipAccumulator(model, 1.0, 640, 480, person_class_ids={0}, fall_class_ids=set())
    rows = []
    for i in range(10):
        rows += acc.add(i / 10, _dets([[0, 0, 10, 20], [50, 50, 60, 70]], [-1, 5], cls=2))
    assert rows + acc.finish() == []


def test_state_of_old_tracks_is_dropped_so_memory_stays_bounded(model):
    acc = ClipAccumulator(model, 1.0, 640, 480, person_class_ids={0}, fall_class_ids=set())
    for i in range(600):  # a new short-lived track every second for 60 s
        acc.add(i / 10, _dets([[10, 10, 50, 100]], [i // 10]))
    assert len(acc._previous) <= 2 and len(acc._tracks) <= 2
