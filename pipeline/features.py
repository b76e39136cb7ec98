"""Per-frame features of one track, from what the detector gives: pure numpy.

Training (synthetic or labelled) and inference both call ``track_features``, so the two
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FEATURE_NAMES", "N_FEATURES", "TrackSeries", "track_features", "is_fall_class", "person_class_ids"]

FEATURE_NAMES = (
    "cx_norm",          # box centre x / frame width
    "cy_norm",          # box centre y / frame height
    "h_norm",           # box height / frame height
    "log_aspect",       # log(width / height)
    "vx_bh_per_s",      # centre x velocity in box heights per second
    "vy_bh_per_s",      # centre y velocity in box heights per second
    "speed_bh_per_s",   # |velocity| in box heights per second
    "dlogh_per_s",      # rate of change of log box height
    "dlogaspect_per_s", # rate of change of log aspect
    "confidence",       # detector confidence
    "fall_score",       # confidence when the detector's class is a fall/down class, else 0
    "dt_s",             # seconds since the previous detection of this track (0 for the first)
)
N_FEATURES = len(FEATURE_NAMES)
_MAX_DT_S = 2.0
_MAX_RATE = 20.0


def track_features(
    t_s: np.ndarray,
    xyxy: np.ndarray,
    confidence: np.ndarray,
    fall_score: np.ndarray,
    frame_width: int,
    frame_height: int,
) -> np.ndarray:
    """Features (n, N_FEATURES) for one track's detections, sorted by ``t_s``.

    Rates use the previous detection; the first row has zero rates. Prepend the track's
    last earlier detection and drop the first output row to carry rates across windows.
    """
    t_s = np.asarray(t_s, dtype=np.float64)
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    n = len(t_s)
    out = np.zeros((n, N_FEATURES), dtype=np.float32)
    if n == 0:
        return out
    w = np.maximum(xyxy[:, 2] - xyxy[:, 0], 1.0)
    h = np.maximum(xyxy[:, 3] - xyxy[:, 1], 1.0)
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2
    cy = (xyxy[:, 1] + xyxy[:, 3]) / 2
    log_h, log_aspect = np.log(h), np.log(w / h)
    out[:, 0] = cx / frame_width
    out[:, 1] = cy / frame_height
    out[:, 2] = h / frame_height
    out[:, 3] = log_aspect
    out[:, 9] = confidence
    out[:, 10] = fall_score
    if n > 1:
        dt = np.maximum(np.diff(t_s), 1e-3)
        h_mid = (h[1:] + h[:-1]) / 2
        vx = np.diff(cx) / h_mid / dt
        vy = np.diff(cy) / h_mid / dt
        rates = np.stack([vx, vy, np.hypot(vx, vy), np.diff(log_h) / dt, np.diff(log_aspect) / dt], axis=1)
        out[1:, 4:9] = np.clip(rates, -_MAX_RATE, _MAX_RATE)
        out[1:, 11] = np.minimum(dt, _MAX_DT_S)
    return out


@dataclass(frozen=True)
class TrackSeries:
    """One track's detections sorted by time, with the frame size: what the features need."""

    t_s: np.ndarray
    xyxy: np.ndarray
    confidence: np.ndarray
    fall_score: np.ndarray
    frame_width: int
    frame_height: int

    def features(self) -> np.ndarray:
        return track_features(self.t_s, self.xyxy, self.confidence, self.fall_score, self.frame_width, self.frame_height)


def is_fall_class(name: str) -> bool:
    """Detector classes that mean a person is down (e.g. ``Fall`` of the default detector)."""
    lowered = name.lower()
    return any(word in lowered for word in ("fall", "down", "lying"))


def person_class_ids(names: dict[int, str]) -> set[int]:
    """Classes whose tracks get actions: ``person`` where the detector has it, else every class."""
    persons = {i for i, n in names.items() if n.lower() in ("person", "people", "pedestrian", "human")}
    return persons or set(names)
