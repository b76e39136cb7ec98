"""Motion-gated detection: the detector runs only on frames where something moved since it last ran.

Each analysed frame gets, on the decode thread, a small smooth grey image (``motion_image``: the
working image ``motion.CameraMotion`` already makes, blurred). ``MotionGate`` compares it with the
image of the last frame the detector saw, the *reference*. A frame goes through the detector when

- gating is ``off``; or (``auto``) the camera moved in the last ``CAMERA_STILL_S`` seconds, by
  ``CameraMotion``'s steps (a moving camera changes every frame: gating would only cost there);
- ``refresh_s`` seconds have passed since the detector last ran, so people who keep still are
  looked at again;
- a keyframe was decoded since the last analysed frame (``Frame.after_keyframe``) and the one
  before was not after one: an encoder codes the whole picture afresh at a keyframe, and on dim,
  small footage that alone can move a detector's confidence across its threshold, with no motion to
  see (all-intra streams, every frame a keyframe, are left to the other rules);
- at least ``MIN_CHANGED_PX`` pixels of the small image changed by more than ``PIXEL_DELTA`` grey
  levels since the reference (always against the reference, not the previous frame: slow motion adds
  up); 8 pixels at 320 px wide are a 16x4 px sliver of a 640 px frame, a fraction of a small person;
- or the tracker has not settled (``GatedDetection``): the detector's last two frames did not give
  the same tracks and the same number of untracked detections, so a new track is confirmed on a
  real frame.

Every other frame is *carried*: the tracker is given the reference's detections again, so its
tracks age exactly as on a detector frame (given nothing, ByteTrack would lose still people after
its buffer), and the tracked boxes come out with the reference's keypoints, marked ``carried``. On a
carried frame the scene is the reference's to within the thresholds, so the detector would have
said the same; the features of a carried frame are those of a person who did not move.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from videolake.pipeline.config import MOTION_GATES
from videolake.pipeline.decode import Frame
from videolake.pipeline.detect import Detections
from videolake.pipeline.errors import ConfigError
from videolake.pipeline.motion import CameraPose

__all__ = ["MOTION_GATES", "PIXEL_DELTA", "MIN_CHANGED_PX", "CAMERA_STEP_WORKING_PX", "CAMERA_STEP_SCALE", "CAMERA_STILL_S",
           "GatedFrame", "AnalysedFrame", "MotionGate", "GatedDetection", "motion_image", "changed_px", "camera_step"]

PIXEL_DELTA = 20                # grey levels (of 255) a pixel of the blurred small image must change by to count
MIN_CHANGED_PX = 8              # pixels of the small image that must change for a frame to count as moved
CAMERA_STEP_WORKING_PX = 1.0    # a camera step larger than this (pixels at CameraMotion's working width) is a move
CAMERA_STEP_SCALE = 0.015       # ... or a zoom step larger than this
CAMERA_STILL_S = 2.0            # gating resumes once the camera has kept still this long
_BLUR_PX = 5


@dataclass(frozen=True)
class GatedFrame:
    """A sampled frame as the gate needs it: the frame, where its camera was, and its small image."""

    frame: Frame
    camera: CameraPose
    motion: np.ndarray  # ``motion_image`` of the frame

    def __repr__(self) -> str:
        return f"GatedFrame({self.frame!r}, motion={self.motion.shape})"


@dataclass(frozen=True)
class AnalysedFrame:
    """A frame's tracked detections (with keypoints where a pose model ran); ``carried``: the detector did not run on it."""

    frame: Frame
    camera: CameraPose
    detections: Detections
    carried: bool


def motion_image(working_image: np.ndarray) -> np.ndarray:
    """The small grey image blurred, so that compression noise and sensor grain do not count as motion."""
    import cv2

    return cv2.GaussianBlur(working_image, (_BLUR_PX, _BLUR_PX), 0)


def changed_px(reference: np.ndarray, image: np.ndarray) -> int:
    """Pixels that changed by more than ``PIXEL_DELTA`` between two motion images (all of them when their sizes differ)."""
    import cv2

    if reference.shape != image.shape:
        return image.size
    _, changed = cv2.threshold(cv2.absdiff(reference, image), PIXEL_DELTA, 255, cv2.THRESH_BINARY)
    return cv2.countNonZero(changed)


def camera_step(previous: CameraPose, current: CameraPose) -> tuple[float, float]:
    """The camera's step between two poses: its shift (frame pixels) and its zoom (|scale - 1|)."""
    scale = current.scale / previous.scale
    return float(np.hypot(current.x_px - scale * previous.x_px, current.y_px - scale * previous.y_px)), abs(scale - 1.0)


class MotionGate:
    """Says, frame by frame in order, whether a frame needs the detector (see the module docstring).

    ``needs_detector`` must see every frame once, in order; ``looked_at`` is told of each frame the
    detector will see, which becomes the reference. ``reasons`` counts why frames went to the detector.
    """

    def __init__(self, mode: str = "auto", refresh_s: float = 2.0, frame_width: int = 320) -> None:
        if mode not in MOTION_GATES:
            raise ConfigError(f"motion_gate must be one of {', '.join(MOTION_GATES)}, got {mode!r}")
        if refresh_s <= 0:
            raise ConfigError(f"motion_refresh_s must be > 0, got {refresh_s}")
        self.mode = mode
        self.refresh_s = refresh_s
        self._step_px = CAMERA_STEP_WORKING_PX * max(1.0, frame_width / 320)  # CameraMotion's working width
        self._reference: np.ndarray | None = None
        self._reference_t_s = -np.inf
        self._camera: CameraPose | None = None
        self._camera_moved_t_s = -np.inf
        self._after_keyframe = False
        self.reasons: Counter[str] = Counter()

    def needs_detector(self, frame: Frame, motion: np.ndarray, camera: CameraPose) -> bool:
        reason = self._reason(frame, motion, camera)
        if reason:
            self.reasons[reason] += 1
        return reason is not None

    def _reason(self, frame: Frame, motion: np.ndarray, camera: CameraPose) -> str | None:
        t_s = frame.t_s
        if self._camera is not None:
            shift_px, zoom = camera_step(self._camera, camera)
            if shift_px > self._step_px or zoom > CAMERA_STEP_SCALE:
                self._camera_moved_t_s = t_s
        self._camera = camera
        fresh_picture = frame.after_keyframe and not self._after_keyframe
        self._after_keyframe = frame.after_keyframe
        if self.mode == "off":
            return "off"
        if self._reference is None:
            return "first"
        if self.mode == "auto" and t_s - self._camera_moved_t_s < CAMERA_STILL_S:
            return "camera"
        if t_s - self._reference_t_s >= self.refresh_s - 1e-9:
            return "refresh"
        if fresh_picture:
            return "keyframe"
        if changed_px(self._reference, motion) >= MIN_CHANGED_PX:
            return "motion"
        return None

    def looked_at(self, t_s: float, motion: np.ndarray) -> None:
        self._reference, self._reference_t_s = motion, t_s

    def unsettled(self) -> None:
        self.reasons["unsettled"] += 1


class GatedDetection:
    """Detector, tracker and pose over a stream of ``GatedFrame``s, in order, the detector only where the gate says.

    ``detect`` takes a batch of images; ``track`` one frame's detections and image; ``pose`` (or None)
    a batch of images and their tracked detections. Frames for the detector are batched up to
    ``batch_size``; a batch is cut short only where the next frame may be carried, which needs the
    batch's results first.
    """

    def __init__(
        self, detect: Callable[[list[np.ndarray]], list[Detections]], track: Callable[[Detections, np.ndarray], Detections],
        pose: Callable[[list[np.ndarray], list[Detections]], list[Detections]] | None, gate: MotionGate, batch_size: int,
    ) -> None:
        self.detect, self.track, self.pose, self.gate = detect, track, pose, gate
        self.batch_size = max(1, batch_size)
        self._raw: Detections | None = None       # the reference's detections, as the detector gave them
        self._tracked: Detections | None = None   # ... tracked, with keypoints
        self._settled = False

    def __call__(self, frames: Iterable[GatedFrame]) -> Iterator[AnalysedFrame]:
        pending: list[GatedFrame] = []
        for item in frames:
            if self.gate.needs_detector(item.frame, item.motion, item.camera):
                pending.append(item)
                self.gate.looked_at(item.frame.t_s, item.motion)
                if len(pending) >= self.batch_size:
                    yield from self._detect(pending)
                    pending = []
                continue
            if pending:  # whether this frame may be carried depends on what the detector says about those
                yield from self._detect(pending)
                pending = []
            if self._settled:
                yield self._carry(item)
            else:
                self.gate.unsettled()
                pending.append(item)
                self.gate.looked_at(item.frame.t_s, item.motion)
        if pending:
            yield from self._detect(pending)

    def _detect(self, batch: list[GatedFrame]) -> Iterator[AnalysedFrame]:
        images = [g.frame.image for g in batch]
        raw = self.detect(images)
        tracked = [self.track(d, image) for d, image in zip(raw, images)]
        if self.pose is not None:
            tracked = self.pose(images, tracked)
        before = tracked[-2] if len(tracked) > 1 else self._tracked
        self._settled = before is not None and _settled(before, tracked[-1])
        self._raw, self._tracked = raw[-1], tracked[-1]
        for g, dets in zip(batch, tracked):
            yield AnalysedFrame(g.frame, g.camera, dets, carried=False)

    def _carry(self, item: GatedFrame) -> AnalysedFrame:
        assert self._raw is not None and self._tracked is not None
        dets = self.track(self._raw, item.frame.image)
        if self._tracked.keypoints is not None:
            dets = dets.with_pose(self._tracked.keypoints, self._tracked.pose_confidence)
        if not np.array_equal(dets.tracker_id, self._tracked.tracker_id):
            self._settled = False
        return AnalysedFrame(item.frame, item.camera, dets, carried=True)


def _settled(before: Detections, after: Detections) -> bool:
    """The tracker gave the same tracks, and left as many detections untracked, on two detector frames.

    A detection the tracker leaves untracked on two frames in a row stays so on a repeat of the frame
    (ByteTrack fuses the score into the match: a box under about 0.3 never confirms a track).
    """
    return sorted(before.tracker_id.tolist()) == sorted(after.tracker_id.tolist())
