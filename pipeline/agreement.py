"""Two runs over the same videos compared: do they give the same answers?

``agreement(a, b)`` takes the ``detections`` and ``clips`` of a reference run ``a`` (e.g. without the
motion gate) and of a run ``b`` (e.g. with it), as Arrow tables of the lake's schemas, and measures:

- ``box_f1``: tracked boxes matched one to one in each frame and class (the Hungarian assignment on
  IoU, a pair counts at IoU >= ``MIN_IOU``); F1 over every frame either run reports a tracked box in;
- track correspondence: each track of ``a`` is paired with the track of ``b`` that shares most of its
  matched boxes (one to one, most shared first);
- clip windows: the clip indices that have clips, per video, in each run (``same_windows``);
- ``actions_equal``: the share of ``a``'s clips whose paired track has a clip in the same window with
  the same action (a clip with no counterpart counts as different).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = ["MIN_IOU", "Agreement", "agreement", "match_boxes"]

MIN_IOU = 0.5


@dataclass(frozen=True)
class Agreement:
    frames: int                 # frames (per video) with a tracked box in either run
    boxes_a: int
    boxes_b: int
    boxes_matched: int
    windows_a: int              # (video, clip index) pairs with clips in a
    windows_b: int
    same_windows: bool
    clips_a: int
    clips_b: int
    clips_paired: int           # clips of a with a clip of the paired track in the same window of b
    clips_same_action: int

    @property
    def box_f1(self) -> float:
        total = self.boxes_a + self.boxes_b
        return 2 * self.boxes_matched / total if total else 1.0

    @property
    def actions_equal(self) -> float:
        return self.clips_same_action / self.clips_a if self.clips_a else 1.0

    def line(self) -> str:
        return (f"box F1 {self.box_f1:.3f} ({self.boxes_matched} of {self.boxes_a}/{self.boxes_b} boxes, {self.frames} frames); "
                f"clip windows {'the same' if self.same_windows else 'DIFFERENT'} ({self.windows_a}/{self.windows_b}); "
                f"actions equal on {self.actions_equal:.1%} of {self.clips_a} clips ({self.clips_paired} paired)")


def match_boxes(a_xyxy: np.ndarray, b_xyxy: np.ndarray, min_iou: float = MIN_IOU) -> list[tuple[int, int]]:
    """One-to-one pairs (index in a, index in b) of boxes (n, 4) that maximise the total IoU, each pair at ``min_iou`` or more."""
    if len(a_xyxy) == 0 or len(b_xyxy) == 0:
        return []
    from scipy.optimize import linear_sum_assignment
    from supervision.detection.utils.iou_and_nms import box_iou_batch

    iou = box_iou_batch(np.asarray(a_xyxy, np.float32), np.asarray(b_xyxy, np.float32))
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if iou[i, j] >= min_iou]


def agreement(a_detections: pa.Table, a_clips: pa.Table, b_detections: pa.Table, b_clips: pa.Table) -> Agreement:
    """How far run ``b`` agrees with run ``a`` (see the module docstring)."""
    a_frames, b_frames = _tracked_by_frame(a_detections), _tracked_by_frame(b_detections)
    matched = 0
    shared: Counter[tuple[tuple, tuple]] = Counter()  # ((video, track in a), (video, track in b)) -> matched boxes
    for key in a_frames.keys() & b_frames.keys():
        (a_boxes, a_tracks), (b_boxes, b_tracks) = a_frames[key], b_frames[key]
        for i, j in match_boxes(a_boxes, b_boxes):
            matched += 1
            shared[(key[0], a_tracks[i]), (key[0], b_tracks[j])] += 1
    pairs: dict[tuple, tuple] = {}
    for (ta, tb), _ in shared.most_common():
        if ta not in pairs and tb not in pairs.values():
            pairs[ta] = tb
    a_rows, b_rows = _clips(a_clips), _clips(b_clips)
    b_action = {(video, window, track): action for video, window, track, action in b_rows}
    paired = same = 0
    for video, window, track, action in a_rows:
        other = pairs.get((video, track))
        if other is not None and (video, window, other[1]) in b_action:
            paired += 1
            same += b_action[(video, window, other[1])] == action
    a_windows, b_windows = {(r[0], r[1]) for r in a_rows}, {(r[0], r[1]) for r in b_rows}
    return Agreement(
        frames=len(a_frames.keys() | b_frames.keys()), boxes_a=sum(len(v[1]) for v in a_frames.values()),
        boxes_b=sum(len(v[1]) for v in b_frames.values()), boxes_matched=matched, windows_a=len(a_windows),
        windows_b=len(b_windows), same_windows=a_windows == b_windows, clips_a=len(a_rows), clips_b=len(b_rows),
        clips_paired=paired, clips_same_action=same,
    )


def _tracked_by_frame(detections: pa.Table) -> dict[tuple, tuple[np.ndarray, list[int]]]:
    """(video_id, frame_index, class_id) -> (boxes (n, 4), track ids) of the tracked detections."""
    rows = detections.select(["video_id", "frame_index", "class_id", "track_id", "x1", "y1", "x2", "y2"]).to_pylist()
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["track_id"] is not None:
            grouped[(r["video_id"], r["frame_index"], r["class_id"])].append(r)
    return {key: (np.array([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in group], np.float32), [r["track_id"] for r in group])
            for key, group in grouped.items()}


def _clips(clips: pa.Table) -> list[tuple[str, int, int, str]]:
    return [(r["video_id"], r["clip_index"], r["track_id"], r["action"])
            for r in clips.select(["video_id", "clip_index", "track_id", "action"]).to_pylist()]
