"""The camera's own motion between analysed frames, so that people's motion can be told from it.

``CameraMotion`` tracks corners of the scene from one analysed frame to the next at low
resolution (OpenCV's Lucas-Kanade), fits a similarity (scale and shift; RANSAC leaves moving
people out as outliers) and accumulates it. Each frame gets a ``CameraPose``: where the frame
sits against the first frame the estimator saw. ``stabilize`` maps frame pixels back to that
reference, where a person standing still stays still while the camera pans, zooms or travels
(exactly for pans and zooms; roughly for a camera moving forward, where depth makes near things
move more than far ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CameraPose", "CameraMotion", "stabilize", "IDENTITY"]

_WIDTH_PX = 320          # the estimator's working width
_MAX_CORNERS = 200
_MIN_INLIERS = 12


@dataclass(frozen=True)
class CameraPose:
    """A frame point ``p`` is the reference point ``q`` seen as ``p = scale * q + (x_px, y_px)``."""

    scale: float = 1.0
    x_px: float = 0.0
    y_px: float = 0.0

    def then(self, scale: float, x_px: float, y_px: float) -> CameraPose:
        """This pose followed by a step ``p' = scale * p + (x_px, y_px)`` between two frames."""
        return CameraPose(self.scale * scale, scale * self.x_px + x_px, scale * self.y_px + y_px)


IDENTITY = CameraPose()


def stabilize(xy: np.ndarray, camera: np.ndarray | None) -> np.ndarray:
    """Points (n, 2), one per frame, in reference pixels, for frames whose poses are ``camera`` (n, 3: scale, x_px, y_px)."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if camera is None:
        return xy
    camera = np.asarray(camera, np.float64).reshape(-1, 3)
    return (xy - camera[:, 1:]) / camera[:, :1]


class CameraMotion:
    """Feed frames in order with ``update``; each gets its accumulated ``CameraPose``."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None
        self._factor = 1.0
        self.pose = IDENTITY
        self.failed_steps = 0

    @property
    def working_image(self) -> np.ndarray | None:
        """The last frame in grey at the estimator's working width (at most 320 px): what ``gating`` compares."""
        return self._previous

    def update(self, image: np.ndarray) -> CameraPose:
        import cv2

        h, w = image.shape[:2]
        factor = w / _WIDTH_PX if w > _WIDTH_PX else 1.0
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if factor > 1.0:
            gray = cv2.resize(gray, (_WIDTH_PX, max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
        if self._previous is not None and self._previous.shape == gray.shape:
            step = _similarity(self._previous, gray)
            if step is None:
                self.failed_steps += 1
            else:
                scale, x, y = step
                self.pose = self.pose.then(scale, x * factor, y * factor)
        self._previous, self._factor = gray, factor
        return self.pose


def _similarity(previous: np.ndarray, current: np.ndarray) -> tuple[float, float, float] | None:
    """Scale and shift (working pixels) that map ``previous`` onto ``current``; None when the scene gives too little."""
    import cv2

    corners = cv2.goodFeaturesToTrack(previous, maxCorners=_MAX_CORNERS, qualityLevel=0.01, minDistance=7)
    if corners is None or len(corners) < _MIN_INLIERS:
        return None
    moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, corners, None, winSize=(21, 21), maxLevel=3)
    ok = status.reshape(-1) == 1
    if ok.sum() < _MIN_INLIERS:
        return None
    matrix, inliers = cv2.estimateAffinePartial2D(corners[ok], moved[ok], method=cv2.RANSAC, ransacReprojThreshold=1.5)
    if matrix is None or inliers is None or int(inliers.sum()) < _MIN_INLIERS:
        return None
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if not 0.8 < scale < 1.25:  # a cut, not a camera move
        return None
    return scale, float(matrix[0, 2]), float(matrix[1, 2])
