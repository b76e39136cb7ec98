"""Detection with Ultralytics YOLO, and the ``Detections`` type every later stage uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from pipeline.errors import ModelError
from pipeline.features import person_class_ids

__all__ = ["Detections", "Detector", "resolve_device"]


@dataclass
class Detections:
    """Boxes of one frame, in pixels of the original frame.

    ``tracker_id`` is -1 for a detection no track claimed.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    tracker_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if self.xyxy.size == 0:
            self.xyxy = self.xyxy.reshape(0, 4)
        n = len(self.xyxy)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (_, 4), got {self.xyxy.shape}")
        self.confidence = np.asarray(self.confidence, dtype=np.float32)
        self.class_id = np.asarray(self.class_id, dtype=np.int64)
        for name in ("confidence", "class_id"):
            shape = getattr(self, name).shape
            if shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {shape}")
        if self.tracker_id is None:
            self.tracker_id = np.full(n, -1, dtype=np.int64)
        else:
            self.tracker_id = np.asarray(self.tracker_id, dtype=np.int64)
            if self.tracker_id.shape != (n,):
                raise ValueError(f"tracker_id must have shape ({n},), got {self.tracker_id.shape}")

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index], self.tracker_id[index])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def from_ultralytics(cls, result: Any) -> Detections:
        """From an Ultralytics ``Results`` (or its ``Boxes``). Track ids are kept when present."""
        boxes = getattr(result, "boxes", result)
        if boxes is None or len(boxes) == 0:
            return cls.empty()
        data = boxes.data.cpu().numpy() if hasattr(boxes.data, "cpu") else np.asarray(boxes.data)
        tracker_id = data[:, 4].astype(np.int64) if getattr(boxes, "is_track", False) else None
        return cls(xyxy=data[:, :4], confidence=data[:, -2], class_id=data[:, -1].astype(np.int64), tracker_id=tracker_id)

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, tracked={int((self.tracker_id >= 0).sum())})"


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Detector:
    """A YOLO model loaded once, run on batches of BGR frames."""

    def __init__(
        self, weights: str, imgsz: int = 640, conf: float = 0.25, device: str = "cpu", agnostic_nms: bool | None = None
    ) -> None:
        from ultralytics import YOLO

        try:
            self.model = YOLO(weights, task="detect")
        except Exception as exc:  # noqa: BLE001 - Ultralytics raises many types for bad weights
            raise ModelError(f"cannot load detector {weights}: {exc}") from None
        self.imgsz = imgsz
        self.conf = conf
        self.device = resolve_device(device)
        self.half = self.device.startswith("cuda")
        self.names: dict[int, str] = {int(k): str(v) for k, v in self.model.names.items()}
        # Detectors whose classes are all states of a person (the default: Normal/Fall) must not
        # keep two boxes of different classes on one person: suppress across classes there.
        self.agnostic_nms = agnostic_nms if agnostic_nms is not None else person_class_ids(self.names) == set(self.names)

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        if not images:
            return []
        results = self.model.predict(
            list(images), imgsz=self.imgsz, conf=self.conf, device=self.device, half=self.half,
            agnostic_nms=self.agnostic_nms, verbose=False,
        )
        return [Detections.from_ultralytics(r) for r in results]
