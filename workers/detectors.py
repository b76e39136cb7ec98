"""Several detectors behind one, so several shards can run at once in one actor.

An Ultralytics model is not safe to call from two threads at once, so an actor that runs
several shards at once (each decoding in its own thread: ``RunConfig.decoders_for``) holds one
detector per shard thread, all on the same GPU: while one thread's batch runs on the GPU the
others decode, letterbox and track. Library code only: no Ray.
"""

from __future__ import annotations

import queue
from typing import Any, Sequence

import numpy as np

from videolake.pipeline.detect import Detections, Detector

__all__ = ["DetectorPool"]


class DetectorPool:
    """Calls go to whichever of ``detectors`` is free; attributes are the first one's."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        if not detectors:
            raise ValueError("DetectorPool needs at least one detector, got 0")
        self.detectors = list(detectors)
        self._free: queue.Queue[Detector] = queue.Queue()
        for detector in self.detectors:
            self._free.put(detector)

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        detector = self._free.get()
        try:
            return detector(images)
        finally:
            self._free.put(detector)

    def __getattr__(self, name: str) -> Any:  # names, device, runtime, half, imgsz, ...
        return getattr(self.detectors[0], name)

    def __len__(self) -> int:
        return len(self.detectors)

    def __repr__(self) -> str:
        return f"DetectorPool({len(self.detectors)} x {self.detectors[0]!r})"
