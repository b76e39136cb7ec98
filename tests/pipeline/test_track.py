import numpy as np
import pytest

from videolake.pipeline.detect import Detections, Detector
from videolake.pipeline.models import default_detector_path
from videolake.pipeline.track import Tracker
from tests.media import real_frames


def _walker(n, step=4.0):
    """One box moving steadily right, as a detector would report it."""
    return [Detections(np.array([[100 + step * i, 100, 140 + step * i, 200]]), [0.9], [0]) for i in range(n)]


@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_a_steady_object_keeps_one_id_starting_at_1(kind):
    tracker = Tracker(kind, fps=8)
    frame = np.zeros((480, 640, 3), np.uint8)
    ids = [tracker.update(d, frame).tracker_id[0] for d in _walker(20)]
    assert set(ids[2:]) == {1}


def test_ids_are_per_video_not_shared_across_trackers():
    frame = np.zeros((480, 640, 3), np.uint8)
    first, second = Tracker(fps=8), Tracker(fps=8)
    for d in _walker(5):
        first.update(d, frame)
    assert {second.update(d, frame).tracker_id[0] for d in _walker(5)[1:]} == {1}


def test_lost_track_buffer_follows_the_real_frame_rate_not_30_fps():
    # A 1 s occlusion: at 30 fps the default 30-frame buffer covers it; at 4 fps it must too (4 frames),
    # and a 3 s occlusion at 4 fps must not be bridged.
    frame = np.zeros((480, 640, 3), np.uint8)

    def ids_after_gap(fps, gap_s):
        tracker = Tracker(fps=fps)
        boxes = _walker(int(fps * 2) + int(fps * gap_s) + 5, step=1.0)
        out = []
        for i, d in enumerate(boxes):
            hidden = int(fps * 2) <= i < int(fps * 2) + int(fps * gap_s)
            out.append(tracker.update(Detections.empty() if hidden else d, frame).tracker_id)
        return out[2].tolist(), out[-1].tolist()

    assert ids_after_gap(4, 0.75)[1] == ids_after_gap(4, 0.75)[0]
    before, after = ids_after_gap(4, 3.0)
    assert after != before


def test_real_video_tracks_the_person_through_carphone():
    detector = Detector(str(default_detector_path()), imgsz=320, device="cpu")
    frames = real_frames("carphone_pristine.mp4", limit=120)[::4]  # ~7.5 fps
    tracker = Tracker(fps=7.5)
    ids = []
    for frame, dets in zip(frames, detector(frames)):
        tracked = tracker.update(dets, frame)
        ids.extend(int(t) for t in tracked.tracker_id if t >= 0)
    assert len(ids) >= 0.8 * len(frames)
    most = max(set(ids), key=ids.count)
    assert ids.count(most) >= 0.7 * len(ids)  # one dominant identity for the one man
