"""Detection with Ultralytics YOLO, and the ``Detections`` type every later stage uses.

On the CPU the detector runs exported to ONNX (ONNX Runtime through Ultralytics' own export
and predictor: same pre- and post-processing, about twice as fast as PyTorch there); the
export is cached (``videolake.pipeline.models.exported_detector``) and PyTorch is the fallback. On CUDA
it runs in PyTorch at half precision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from videolake.pipeline.config import RUNTIMES
from videolake.pipeline.errors import ConfigError, ModelError
from videolake.pipeline.features import person_class_ids

__all__ = ["Detections", "Detector", "RUNTIMES", "resolve_device", "resolve_runtime"]

log = logging.getLogger(__name__)


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


def resolve_runtime(runtime: str, device: str, weights: str) -> str:
    """``auto`` → ``onnx`` for PyTorch weights on the CPU, else ``torch``. Exported weights (``.onnx``) run as they are."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    suffix = Path(weights).suffix
    if suffix == ".onnx":
        return "onnx"
    if suffix != ".pt":
        return "torch"  # other exported formats: Ultralytics picks their runtime
    if runtime == "auto":
        return "onnx" if device == "cpu" else "torch"
    return runtime


class Detector:
    """A YOLO model loaded once, run on batches of BGR frames.

    ``runtime``: ``auto`` (ONNX Runtime on the CPU, PyTorch on CUDA), ``torch`` or ``onnx``.
    ``runtime`` says what actually runs: a failed export falls back to ``torch`` with a warning.
    ``threads`` sets ONNX Runtime's intra-op threads (PyTorch's are the process's, ``torch.set_num_threads``).
    """

    def __init__(
        self, weights: str, imgsz: int = 640, conf: float = 0.25, device: str = "cpu", agnostic_nms: bool | None = None,
        runtime: str = "auto", threads: int | None = None,
    ) -> None:
        from videolake.pipeline.models import check_safe_ultralytics

        check_safe_ultralytics()  # a .pt is a pickle: never unpickled without weights_only
        from ultralytics import YOLO

        self.device = resolve_device(device)
        self.runtime = resolve_runtime(runtime, self.device, weights)
        self.weights = weights
        path = weights
        if self.runtime == "onnx" and Path(weights).suffix == ".pt":
            from videolake.pipeline.models import exported_detector

            try:
                path = str(exported_detector(weights, imgsz))
            except ModelError as exc:
                log.warning("%s; running the detector in PyTorch instead", exc)
                self.runtime = "torch"
        try:
            self.model = YOLO(path, task="detect")
        except Exception as exc:  # noqa: BLE001 - Ultralytics raises many types for bad weights
            raise ModelError(f"cannot load detector {weights}: {exc}") from None
        self.imgsz = imgsz
        self.conf = conf
        self.half = self.device.startswith("cuda") and self.runtime == "torch"
        self.names: dict[int, str] = {int(k): str(v) for k, v in self.model.names.items()}
        # Detectors whose classes are all states of a person (the default: Normal/Fall) must not
        # keep two boxes of different classes on one person: suppress across classes there.
        self.agnostic_nms = agnostic_nms if agnostic_nms is not None else person_class_ids(self.names) == set(self.names)
        self(np.zeros((imgsz // 2, imgsz, 3), np.uint8)[None])  # load, fuse and warm up now, not on the first video
        if self.runtime == "onnx" and threads:
            _set_onnx_threads(self.model, path, threads)

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        if len(images) == 0:
            return []
        results = self.model.predict(
            list(images), imgsz=self.imgsz, conf=self.conf, device=self.device, quantize=16 if self.half else None,
            agnostic_nms=self.agnostic_nms, verbose=False,
        )
        return [Detections.from_ultralytics(r) for r in results]

    def __repr__(self) -> str:
        return f"Detector({Path(self.weights).name}, runtime={self.runtime}, device={self.device}, imgsz={self.imgsz})"


def _set_onnx_threads(model: Any, path: str, threads: int) -> None:
    """Rebuild Ultralytics' ONNX Runtime session with ``threads`` intra-op threads (it does not take options)."""
    import onnxruntime as ort

    backend = getattr(getattr(model.predictor, "model", None), "backend", None)
    if backend is None or not hasattr(backend, "session"):
        return
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    backend.session = ort.InferenceSession(path, options, providers=backend.session.get_providers())
