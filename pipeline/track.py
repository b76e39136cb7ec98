"""Tracking with Ultralytics' own ByteTrack / BoT-SORT, at the real analysis frame rate."""

from __future__ import annotations

import inspect

import numpy as np

from videolake.pipeline.detect import Detections
from videolake.pipeline.errors import ConfigError

__all__ = ["Tracker"]

# Ultralytics' tracker configs count their buffer in frames of a 30 fps stream.
_REFERENCE_FPS = 30.0


class Tracker:
    """One tracker per video: ids start at 1 and are dense in order of first appearance."""

    def __init__(self, kind: str = "bytetrack", fps: float = 30.0) -> None:
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml

        if kind not in ("bytetrack", "botsort"):
            raise ConfigError(f"tracker must be bytetrack or botsort, got {kind!r}")
        if fps <= 0:
            raise ConfigError(f"tracker fps must be > 0, got {fps}")
        cfg = IterableSimpleNamespace(**YAML.load(check_yaml(f"{kind}.yaml")))
        cfg.with_reid = False  # ReID needs an extra downloaded model
        cls = TRACKER_MAP[cfg.tracker_type]
        if "frame_rate" in inspect.signature(cls.__init__).parameters:
            self._tracker = cls(args=cfg, frame_rate=max(1, round(fps)))
        else:  # newer Ultralytics: the buffer is in frames; scale it from 30 fps to ours
            cfg.track_buffer = max(1, round(cfg.track_buffer * fps / _REFERENCE_FPS))
            self._tracker = cls(args=cfg)
        self.fps = fps
        self._ids: dict[int, int] = {}

    def update(self, detections: Detections, image: np.ndarray | None = None) -> Detections:
        """Assign ``tracker_id`` to the detections of the next frame (-1 where no track claims one)."""
        from ultralytics.engine.results import Boxes

        tracked = np.full(len(detections), -1, dtype=np.int64)
        shape = image.shape[:2] if image is not None else (1, 1)
        data = np.concatenate(
            [detections.xyxy, detections.confidence[:, None], detections.class_id[:, None].astype(np.float32)], axis=1
        )
        rows = self._tracker.update(Boxes(data, shape), image)
        for row in rows:
            raw_id, index = int(row[4]), int(row[-1])
            tracked[index] = self._ids.setdefault(raw_id, len(self._ids) + 1)
        return detections.with_tracks(tracked)
