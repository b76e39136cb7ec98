"""Clip windows and the per-track action classification inside them.

Clips are windows of ``clip_seconds`` aligned to the video's start: clip ``k`` covers
``[k * clip_seconds, (k + 1) * clip_seconds)``. Tracks are buffered for the current
window only, so memory does not grow with the video's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from videolake.pipeline.detect import Detections
from videolake.pipeline.features import N_FEATURES, track_features

if TYPE_CHECKING:  # torch loads only where a model runs, not in the driver
    from videolake.pipeline.actions import ActionModel

__all__ = ["clip_index", "clip_bounds", "ClipRow", "ClipAccumulator"]


def clip_index(t_s: float, clip_seconds: float) -> int:
    return max(0, int(math.floor(t_s / clip_seconds + 1e-9)))


def clip_bounds(index: int, clip_seconds: float) -> tuple[float, float]:
    return index * clip_seconds, (index + 1) * clip_seconds


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


@dataclass
class _TrackWindow:
    t_s: list[float] = field(default_factory=list)
    xyxy: list[np.ndarray] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    fall_score: list[float] = field(default_factory=list)


class ClipAccumulator:
    """Feed frames in time order with ``add``; completed windows come back as ``ClipRow``s."""

    def __init__(
        self,
        model: ActionModel,
        clip_seconds: float,
        frame_width: int,
        frame_height: int,
        person_class_ids: set[int],
        fall_class_ids: set[int],
        min_frames: int = 4,
    ) -> None:
        self.model = model
        self.clip_seconds = clip_seconds
        self.frame_size = (frame_width, frame_height)
        self.person_class_ids = person_class_ids
        self.fall_class_ids = fall_class_ids
        self.min_frames = min_frames
        self._window: int | None = None
        self._tracks: dict[int, _TrackWindow] = {}
        self._previous: dict[int, tuple[int, float, np.ndarray, float, float]] = {}  # last row of the previous window

    def add(self, t_s: float, detections: Detections) -> list[ClipRow]:
        index = clip_index(t_s, self.clip_seconds)
        done = self._close_window() if self._window is not None and index != self._window else []
        self._window = index
        for i in np.flatnonzero(detections.tracker_id >= 0):
            if int(detections.class_id[i]) not in self.person_class_ids:
                continue
            track = self._tracks.setdefault(int(detections.tracker_id[i]), _TrackWindow())
            conf = float(detections.confidence[i])
            track.t_s.append(t_s)
            track.xyxy.append(detections.xyxy[i])
            track.confidence.append(conf)
            track.fall_score.append(conf if int(detections.class_id[i]) in self.fall_class_ids else 0.0)
        return done

    def finish(self) -> list[ClipRow]:
        return self._close_window() if self._window is not None else []

    def _close_window(self) -> list[ClipRow]:
        assert self._window is not None
        index = self._window
        track_ids = sorted(self._tracks)
        sequences = []
        for track_id in track_ids:
            w = self._tracks[track_id]
            t, boxes = np.array(w.t_s), np.array(w.xyxy, dtype=np.float32).reshape(-1, 4)
            conf, fall = np.array(w.confidence), np.array(w.fall_score)
            prev = self._previous.get(track_id)
            carried = prev is not None and prev[0] == index - 1
            if carried:
                t = np.r_[prev[1], t]
                boxes = np.vstack([prev[2][None], boxes])
                conf, fall = np.r_[prev[3], conf], np.r_[prev[4], fall]
            features = track_features(t, boxes, conf, fall, *self.frame_size)
            sequences.append(features[1:] if carried else features)
            self._previous[track_id] = (index, float(t[-1]), boxes[-1], float(conf[-1]), float(fall[-1]))
        # Forget tracks that did not appear in this window: rates across a gap that long mean nothing.
        self._previous = {k: v for k, v in self._previous.items() if v[0] == index}
        predictions = self.model.classify([s if len(s) else np.zeros((0, N_FEATURES), np.float32) for s in sequences], self.min_frames)
        t_start_s, t_end_s = clip_bounds(index, self.clip_seconds)
        rows = [
            ClipRow(index, t_start_s, t_end_s, track_id, p.action, p.confidence, p.probs, len(self._tracks[track_id].t_s))
            for track_id, p in zip(track_ids, predictions)
        ]
        self._tracks = {}
        return rows
