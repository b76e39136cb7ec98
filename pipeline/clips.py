"""Clip windows and the per-track action decision inside them.

Clips are windows of ``clip_seconds`` aligned to the video's start: clip ``k`` covers
``[k * clip_seconds, (k + 1) * clip_seconds)``. Tracks are buffered for the current
window only, so memory does not grow with the video's length.

What a tracked box gets in a window (``clip_evidence``, shared with training on labels):

- no row at all when the box is not a person: with pose, fewer than half of its frames show
  a person to the pose model (a plausible skeleton, or the pose model's person confidence of
  at least ``PERSON_CONFIDENCE``);
- ``unknown`` when the evidence is too thin to say: fewer than ``min_frames`` detections, or
  (with pose) fewer than two frames with a usable skeleton, or usable skeletons in under half the frames;
- otherwise the action model's class, or ``unknown`` when its top probability is under the
  model's calibrated threshold (``ActionModel.classify``);
- but never ``running``, ``sitting``, ``lying`` or ``falling`` (``unknown`` instead, the probabilities
  kept) for a box cut by the frame's edge in half its frames or more (``Evidence.PARTIAL``): a body
  entering or leaving the picture makes a box that widens, shortens and slides, which is what a fall
  or a run looks like; a body cut at the bottom has hips and no legs, which is what sitting looks like;
  and the rest of the body is not there to say otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Sequence

import numpy as np

from videolake.pipeline.detect import Detections
from videolake.pipeline.features import TrackSeries, skeleton_ok, window_features
from videolake.pipeline.motion import IDENTITY, CameraPose

if TYPE_CHECKING:  # torch loads only where a model runs, not in the driver
    from videolake.pipeline.actions import ActionModel, ActionPrediction

__all__ = ["clip_index", "clip_bounds", "ClipRow", "ClipAccumulator", "Evidence", "clip_evidence", "classify_person_clips",
           "PERSON_CONFIDENCE", "cut_by_frame"]

# The pose model's own confidence that a person is in the crop, enough on its own (a seated
# person seen from the chest up has no usable skeleton, but is a person).
PERSON_CONFIDENCE = 0.7
_EDGE_FRACTION = 0.01  # a box within this share of the frame's size (2 px at least) of an edge is cut by it


def clip_index(t_s: float, clip_seconds: float) -> int:
    return max(0, int(math.floor(t_s / clip_seconds + 1e-9)))


def clip_bounds(index: int, clip_seconds: float) -> tuple[float, float]:
    return index * clip_seconds, (index + 1) * clip_seconds


class Evidence(Enum):
    NOT_A_PERSON = "not_a_person"  # no row
    UNKNOWN = "unknown"            # a row, action unknown
    ENOUGH = "enough"              # a row, classified
    PARTIAL = "partial"            # a row, classified, but never ``actions.WHOLE_BODY_ACTIONS``: the frame cuts the body

    @property
    def classified(self) -> bool:
        """The action model answers (and labelled clips with this evidence train it)."""
        return self in (Evidence.ENOUGH, Evidence.PARTIAL)


def clip_evidence(window: TrackSeries, min_frames: int) -> Evidence:
    """What one track's detections inside one clip window are evidence of (see the module docstring)."""
    n = len(window.t_s)
    whole = Evidence.PARTIAL if cut_by_frame(window).sum() * 2 >= n else Evidence.ENOUGH
    if window.keypoints is None or window.pose_confidence is None:  # box-only results
        return whole if n >= min_frames else Evidence.UNKNOWN
    skeletons = skeleton_ok(window.keypoints, window.pose_confidence)
    person = skeletons | (window.pose_confidence >= PERSON_CONFIDENCE)
    if person.sum() * 2 < n:
        return Evidence.NOT_A_PERSON
    if n < min_frames or skeletons.sum() < 2 or skeletons.sum() * 2 < n:
        return Evidence.UNKNOWN
    return whole


def classify_person_clips(model: ActionModel, sequences: Sequence[np.ndarray], evidence: Sequence[Evidence]) -> list[ActionPrediction]:
    """What a run writes for each person clip (no ``NOT_A_PERSON`` here): the model's answer where the evidence
    allows one, never ``actions.WHOLE_BODY_ACTIONS`` for a ``PARTIAL`` box. Inference and evaluation both call this."""
    return model.classify(sequences, known=[e.classified for e in evidence], whole_body=[e is Evidence.ENOUGH for e in evidence])


def cut_by_frame(window: TrackSeries) -> np.ndarray:
    """(n,) True where the box reaches an edge of the frame (the body goes on beyond it)."""
    xyxy = window.xyxy.reshape(-1, 4)
    mx, my = max(2.0, _EDGE_FRACTION * window.frame_width), max(2.0, _EDGE_FRACTION * window.frame_height)
    return ((xyxy[:, 0] <= mx) | (xyxy[:, 1] <= my) | (xyxy[:, 2] >= window.frame_width - mx)
            | (xyxy[:, 3] >= window.frame_height - my))


@dataclass(frozen=True)
class ClipRow:
    clip_index: int
    t_start_s: float
    t_end_s: float
    track_id: int
    action: str
    action_confidence: float | None
    action_probs: list[float] | None
    n_frames: int
    n_pose_frames: int | None


@dataclass
class _TrackWindow:
    t_s: list[float] = field(default_factory=list)
    xyxy: list[np.ndarray] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)
    pose_confidence: list[float] = field(default_factory=list)
    camera: list[tuple[float, float, float]] = field(default_factory=list)

    def series(self, frame_size: tuple[int, int], with_pose: bool) -> TrackSeries:
        return TrackSeries(
            np.array(self.t_s, np.float64), np.array(self.xyxy, np.float32).reshape(-1, 4), np.array(self.confidence, np.float32),
            np.array(self.keypoints, np.float32).reshape(-1, 17, 3) if with_pose else None,
            np.array(self.pose_confidence, np.float32) if with_pose else None, *frame_size,
            np.array(self.camera, np.float64).reshape(-1, 3),
        )


class ClipAccumulator:
    """Feed frames in time order with ``add``; completed windows come back as ``ClipRow``s.

    ``with_pose``: detections carry keypoints (else the run is box-only and every tracked box
    of a person class is taken for a person).
    """

    def __init__(
        self,
        model: ActionModel,
        clip_seconds: float,
        frame_width: int,
        frame_height: int,
        person_class_ids: set[int],
        with_pose: bool,
        min_frames: int = 4,
    ) -> None:
        self.model = model
        self.clip_seconds = clip_seconds
        self.frame_size = (frame_width, frame_height)
        self.person_class_ids = person_class_ids
        self.with_pose = with_pose
        self.min_frames = min_frames
        self._window: int | None = None
        self._tracks: dict[int, _TrackWindow] = {}
        self._previous: dict[int, tuple[int, TrackSeries]] = {}  # last detection of each track's previous window

    def add(self, t_s: float, detections: Detections, camera: CameraPose = IDENTITY) -> list[ClipRow]:
        """One analysed frame's detections and where its camera was (``motion.CameraMotion``)."""
        index = clip_index(t_s, self.clip_seconds)
        done = self._close_window() if self._window is not None and index != self._window else []
        self._window = index
        if self.with_pose and detections.keypoints is None and len(detections):
            raise ValueError("this accumulator expects detections with keypoints (with_pose=True)")
        for i in np.flatnonzero(detections.tracker_id >= 0):
            if int(detections.class_id[i]) not in self.person_class_ids:
                continue
            track = self._tracks.setdefault(int(detections.tracker_id[i]), _TrackWindow())
            track.t_s.append(t_s)
            track.xyxy.append(detections.xyxy[i])
            track.confidence.append(float(detections.confidence[i]))
            track.camera.append((camera.scale, camera.x_px, camera.y_px))
            if self.with_pose:
                track.keypoints.append(detections.keypoints[i])
                track.pose_confidence.append(float(detections.pose_confidence[i]))
        return done

    def finish(self) -> list[ClipRow]:
        return self._close_window() if self._window is not None else []

    def _close_window(self) -> list[ClipRow]:
        assert self._window is not None
        index = self._window
        decided: list[tuple[int, Evidence, np.ndarray, TrackSeries]] = []
        for track_id in sorted(self._tracks):
            series = self._tracks[track_id].series(self.frame_size, self.with_pose)
            previous = self._previous.get(track_id)
            carried = previous[1] if previous is not None and previous[0] == index - 1 else None
            decided.append((track_id, clip_evidence(series, self.min_frames), window_features(series, carried), series))
            self._previous[track_id] = (index, series.take(np.array([-1])))
        # Forget tracks that did not appear in this window: rates across a gap that long mean nothing.
        self._previous = {k: v for k, v in self._previous.items() if v[0] == index}
        self._tracks = {}
        kept = [d for d in decided if d[1] is not Evidence.NOT_A_PERSON]
        predictions = classify_person_clips(self.model, [features for _, _, features, _ in kept],
                                            [evidence for _, evidence, _, _ in kept])
        t_start_s, t_end_s = clip_bounds(index, self.clip_seconds)
        return [
            ClipRow(index, t_start_s, t_end_s, track_id, p.action, p.confidence, p.probs, len(series.t_s),
                    int(skeleton_ok(series.keypoints, series.pose_confidence).sum()) if series.keypoints is not None else None)
            for (track_id, _, _, series), p in zip(kept, predictions)
        ]
