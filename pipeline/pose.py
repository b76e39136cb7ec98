"""Top-down pose: the 17 COCO keypoints of every tracked person, from an Ultralytics pose model on crops.

Each tracked person box is cut out as a square around the box (``margin`` of its longer side on
every side), scaled to ``imgsz`` pixels, and all crops of a batch of frames go through the pose
model together. In each crop the predicted person whose box best matches the detector's box
(IoU >= ``MIN_MATCH_IOU``) gives the keypoints, mapped back to frame pixels.

A box wider than tall may hold a person lying down, whom a COCO pose model trained on upright
people does not see. Such a box is also cut turned a quarter each way; a turned crop's skeleton
replaces the upright one only when the pose model is confident of it (``TURNED_MIN_CONFIDENCE``)
and more so than of the upright one. Measured on real footage turned on its side, most people lying
across the picture got a usable skeleton only from the crop that stands them up; on the labelled
upright footage it changed no clip's answer (docs/models.md).

Why crops rather than the pose model on whole frames: the default person detector finds small
people (50-100 px) that a COCO pose model at 640 px misses, and a 192 px crop of a person costs
about 1/20 of a detector frame (see docs/models.md for the figures).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from videolake.pipeline.detect import Detections, load_yolo, resolve_device, set_onnx_threads
from videolake.pipeline.errors import ModelError

__all__ = ["KEYPOINT_NAMES", "SKELETON", "N_KEYPOINTS", "PoseEstimator", "CropBox", "square_crop", "turn_crop"]

KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
N_KEYPOINTS = len(KEYPOINT_NAMES)
# Bones to draw, as pairs of keypoint indices.
SKELETON = ((5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
            (0, 5), (0, 6))
MIN_MATCH_IOU = 0.3
TURNED_MIN_CONFIDENCE = 0.7  # the pose model's person confidence a quarter-turned crop needs to count
_MAX_CROPS_PER_CALL = 64


@dataclass(frozen=True)
class CropBox:
    """A square cut of a frame, ``size_px`` wide, turned ``quarter_turns`` x 90 degrees anticlockwise.

    Before turning, frame pixel = crop pixel * ``scale`` + (``x0_px``, ``y0_px``).
    """

    x0_px: float
    y0_px: float
    scale: float
    size_px: int = 0
    quarter_turns: int = 0

    def to_crop(self, xyxy: np.ndarray) -> np.ndarray:
        """A box in frame pixels as a box in the (turned) crop's pixels."""
        x1, y1, x2, y2 = np.asarray(xyxy, np.float32)
        corners = self._turn((np.array([[x1, y1], [x2, y2]], np.float32) - [self.x0_px, self.y0_px]) / self.scale, self.quarter_turns)
        return np.concatenate([corners.min(axis=0), corners.max(axis=0)])

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Points (n, 2) in the (turned) crop's pixels as frame pixels."""
        return self._turn(np.asarray(xy, np.float32), -self.quarter_turns) * self.scale + [self.x0_px, self.y0_px]

    def _turn(self, xy: np.ndarray, quarter_turns: int) -> np.ndarray:
        """Points as ``np.rot90(crop, quarter_turns)`` moves them (x right, y down)."""
        xy = np.asarray(xy, np.float32).reshape(-1, 2)
        for _ in range(quarter_turns % 4):
            xy = np.stack([xy[:, 1], self.size_px - xy[:, 0]], axis=1)
        return xy


def square_crop(
    image: np.ndarray, xyxy: np.ndarray, size_px: int, margin: float, quarter_turns: int = 0,
) -> tuple[np.ndarray, CropBox]:
    """A ``size_px`` square around the box (its longer side plus ``margin`` of it on each side), grey outside the frame.

    ``quarter_turns`` turns the square 90 degrees anticlockwise that many times (negative: clockwise).
    """
    import cv2

    x1, y1, x2, y2 = (float(v) for v in xyxy)
    side = max(x2 - x1, y2 - y1, 1.0) * (1 + 2 * margin)
    box = CropBox((x1 + x2 - side) / 2, (y1 + y2 - side) / 2, side / size_px, size_px)
    matrix = np.array([[1 / box.scale, 0, -box.x0_px / box.scale], [0, 1 / box.scale, -box.y0_px / box.scale]], np.float32)
    crop = cv2.warpAffine(image, matrix, (size_px, size_px), flags=cv2.INTER_LINEAR, borderValue=(114, 114, 114))
    return turn_crop(crop, box, quarter_turns)


def turn_crop(crop: np.ndarray, box: CropBox, quarter_turns: int) -> tuple[np.ndarray, CropBox]:
    """An upright crop and its box turned ``quarter_turns`` x 90 degrees anticlockwise (negative: clockwise)."""
    if quarter_turns % 4 == 0:
        return crop, box
    return np.ascontiguousarray(np.rot90(crop, quarter_turns)), replace(box, quarter_turns=quarter_turns)


class PoseEstimator:
    """An Ultralytics COCO-pose model run on person crops; adds ``keypoints``/``pose_confidence`` to detections.

    ``runtime`` as for ``Detector``: ONNX Runtime on the CPU (exported once, cached), PyTorch at
    fp16 on CUDA. ``conf`` is the pose model's own person threshold inside a crop.
    """

    def __init__(
        self, weights: str, imgsz: int = 192, margin: float = 0.15, conf: float = 0.25, device: str = "cpu",
        runtime: str = "auto", threads: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.weights = weights
        self.model, self.runtime = load_yolo(weights, imgsz, self.device, runtime, threads, what="pose model")
        if self.model.task != "pose":
            raise ModelError(f"{weights} is a {self.model.task} model, not a pose model (e.g. yolo11n-pose.pt)")
        kpt_shape = tuple(getattr(self.model.model, "kpt_shape", None) or self.model.overrides.get("kpt_shape") or (17, 3))
        if tuple(kpt_shape) not in ((17, 3), (17, 2)):
            raise ModelError(f"{weights} predicts keypoints of shape {kpt_shape}; COCO's 17 keypoints are needed")
        self.imgsz, self.margin, self.conf = imgsz, margin, conf
        self.half = self.device.startswith("cuda") and self.runtime == "torch"
        self._lock = threading.Lock()  # an Ultralytics predictor is not thread-safe; shards may run side by side
        self._predict([np.zeros((imgsz, imgsz, 3), np.uint8)])  # load, fuse and warm up now
        if self.runtime == "onnx" and threads:
            set_onnx_threads(self.model, threads)

    def __call__(self, images: Sequence[np.ndarray], detections: Sequence[Detections], person_ids: set[int]) -> list[Detections]:
        """The same detections with keypoints for every tracked person (zeros where the model found none)."""
        jobs: list[tuple[int, int, CropBox]] = []
        crops: list[np.ndarray] = []
        for f, (image, dets) in enumerate(zip(images, detections)):
            for i in np.flatnonzero(dets.tracker_id >= 0):
                if int(dets.class_id[i]) in person_ids:
                    upright = square_crop(image, dets.xyxy[i], self.imgsz, self.margin)
                    x1, y1, x2, y2 = dets.xyxy[i]
                    for turns in (0, 1, -1) if x2 - x1 > y2 - y1 else (0,):  # wide: maybe lying, stand it up
                        crop, box = turn_crop(*upright, turns)
                        crops.append(crop)
                        jobs.append((f, int(i), box))
        keypoints = [np.zeros((len(d), N_KEYPOINTS, 3), np.float32) for d in detections]
        pose_confidence = [np.zeros(len(d), np.float32) for d in detections]
        results = [r for start in range(0, len(crops), _MAX_CROPS_PER_CALL)
                   for r in self._predict(crops[start:start + _MAX_CROPS_PER_CALL])]
        for (f, i, box), result in zip(jobs, results):
            match = _best_match(result, box.to_crop(detections[f].xyxy[i]))
            if match is None:
                continue
            kp, person_conf = match
            if box.quarter_turns and (person_conf < TURNED_MIN_CONFIDENCE or person_conf <= pose_confidence[f][i]):
                continue  # a turned crop's skeleton counts only where it is confident, and more than upright
            keypoints[f][i, :, :2] = box.to_frame(kp[:, :2])
            keypoints[f][i, :, 2] = kp[:, 2]
            pose_confidence[f][i] = person_conf
        return [d.with_pose(k, c) for d, k, c in zip(detections, keypoints, pose_confidence)]

    def _predict(self, crops: list[np.ndarray]) -> list:
        if not crops:
            return []
        with self._lock:
            return self.model.predict(crops, imgsz=self.imgsz, conf=self.conf, device=self.device,
                                      quantize=16 if self.half else None, verbose=False)

    def __repr__(self) -> str:
        from pathlib import Path

        return f"PoseEstimator({Path(self.weights).name}, runtime={self.runtime}, device={self.device}, imgsz={self.imgsz})"


def _best_match(result, expected_xyxy: np.ndarray) -> tuple[np.ndarray, float] | None:  # noqa: ANN001 - Ultralytics Results
    """The keypoints (17, 3) and confidence of the predicted person that best overlaps the expected box."""
    if result.boxes is None or len(result.boxes) == 0 or result.keypoints is None:
        return None
    from supervision.detection.utils.iou_and_nms import box_iou_batch

    boxes = result.boxes.xyxy.cpu().numpy()
    overlap = box_iou_batch(expected_xyxy[None].astype(np.float32), boxes)[0]
    best = int(overlap.argmax())
    if overlap[best] < MIN_MATCH_IOU:
        return None
    data = result.keypoints.data.cpu().numpy()[best]
    if data.shape[1] == 2:  # a model without keypoint confidences: visible where predicted
        data = np.concatenate([data, np.ones((len(data), 1), np.float32)], axis=1)
    return data.astype(np.float32), float(result.boxes.conf[best])
