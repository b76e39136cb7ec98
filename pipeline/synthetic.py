"""Synthetic labelled tracks for the five default actions, rendered as detector output.

Each sample is what a detector and tracker would give for one person over one clip:
timestamps, boxes in pixels, confidences and a fall-class score, with box noise,
occlusion gaps, camera scale, frame size and frame-rate variety. Features then come from
``videolake.pipeline.features.track_features``, the same code inference uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videolake.pipeline.actions import ACTIONS
from videolake.pipeline.features import TrackSeries

__all__ = ["SyntheticTrack", "generate_tracks", "generate_features"]

_FPS_CHOICES = (4, 5, 6, 8, 10, 12, 15, 20, 24, 25, 30)
_FRAME_SIZES = ((640, 360), (1280, 720), (1920, 1080), (640, 272), (176, 144), (480, 640), (1024, 768))


@dataclass(frozen=True)
class SyntheticTrack(TrackSeries):
    """A generated track and its true action (an index into ``ACTIONS``)."""

    label: int = -1


def generate_features(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` feature sequences and their labels (indices into ``ACTIONS``), balanced by class."""
    tracks = generate_tracks(n, seed)
    return [t.features() for t in tracks], np.array([t.label for t in tracks], dtype=np.int64)


def generate_tracks(n: int, seed: int) -> list[SyntheticTrack]:
    rng = np.random.default_rng(seed)
    return [_one_track(i % len(ACTIONS), rng) for i in range(n)]


def _one_track(label: int, rng: np.random.Generator) -> SyntheticTrack:
    action = ACTIONS[label]
    fps = float(rng.choice(_FPS_CHOICES)) * rng.uniform(0.97, 1.03)
    duration_s = rng.uniform(1.0, 4.0)
    t = np.arange(0.0, duration_s, 1.0 / fps)
    t = t + rng.normal(0, 0.1 / fps, len(t)) * (rng.random() < 0.3)  # jittery timestamps (VFR)
    t = np.sort(t)
    frame_w, frame_h = _FRAME_SIZES[rng.integers(len(_FRAME_SIZES))]
    height0 = frame_h * rng.uniform(0.1, 1.0)
    close_up = action in ("standing", "walking") and rng.random() < 0.2  # upper body only, e.g. seated
    upright_aspect = rng.uniform(0.6, 1.2) if close_up else rng.uniform(0.28, 0.5)
    cx0 = frame_w * rng.uniform(0.15, 0.85)
    foot0 = frame_h * rng.uniform(0.45, 0.98)

    # Motion in body heights per second; depth motion shows as a change of scale.
    speed = {"standing": rng.uniform(0.0, 0.15), "walking": rng.uniform(0.35, 1.3), "running": rng.uniform(1.6, 4.0),
             "falling": rng.uniform(0.0, 0.8), "lying": rng.uniform(0.0, 0.06)}[action]
    heading = rng.uniform(0, 2 * np.pi)
    lateral, depth = speed * np.cos(heading), speed * np.sin(heading)
    log_scale = depth * rng.uniform(0.05, 0.25) * t
    height = height0 * np.exp(log_scale)
    cx = cx0 + np.cumsum(np.r_[0, np.diff(t)] * lateral * height)
    foot = foot0 + np.cumsum(np.r_[0, np.diff(t)] * depth * rng.uniform(0.02, 0.1) * height)
    aspect = np.full_like(t, upright_aspect)
    if action in ("walking", "running"):
        step_hz = rng.uniform(1.5, 2.2) if action == "walking" else rng.uniform(2.4, 3.6)
        swing = rng.uniform(0.03, 0.1) if action == "walking" else rng.uniform(0.08, 0.2)
        phase = rng.uniform(0, 2 * np.pi)
        aspect = upright_aspect + swing * np.abs(np.sin(np.pi * step_hz * t + phase))
        height = height * (1 - 0.03 * np.abs(np.sin(np.pi * step_hz * t + phase)))
    down = np.zeros_like(t)  # 0 upright .. 1 on the ground
    if action == "lying":
        down[:] = 1.0
    elif action == "falling":
        fall_start = rng.uniform(0.05, 0.6) * duration_s
        fall_len = min(rng.uniform(0.3, 1.0), max(0.2, duration_s - fall_start))
        down = np.clip((t - fall_start) / fall_len, 0, 1)
        down = down * down * (3 - 2 * down)  # smooth step
        lateral_after = np.where(t > fall_start, 0.0, 1.0)
        cx = cx0 + np.cumsum(np.r_[0, np.diff(t)] * lateral * height * lateral_after)
    lying_len = height0 * rng.uniform(0.75, 1.05)
    lying_h = height0 * rng.uniform(0.2, 0.45)
    box_h = height * (1 - down) + lying_h * np.exp(log_scale) * down
    box_w = height * aspect * (1 - down) + lying_len * np.exp(log_scale) * down
    xyxy = np.stack([cx - box_w / 2, foot - box_h, cx + box_w / 2, foot], axis=1)

    noise = rng.uniform(0.005, 0.06)
    xyxy = xyxy + rng.normal(0, noise, xyxy.shape) * box_h[:, None]
    if rng.random() < 0.3:  # a shaking camera moves the whole box
        shake = rng.normal(0, rng.uniform(0.005, 0.04), (len(t), 2)) * box_h[:, None]
        xyxy = xyxy + np.hstack([shake, shake])  # same (dx, dy) for both corners
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, frame_w)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, frame_h)
    xyxy[:, 2] = np.maximum(xyxy[:, 2], xyxy[:, 0] + 2)
    xyxy[:, 3] = np.maximum(xyxy[:, 3], xyxy[:, 1] + 2)

    confidence = np.clip(rng.uniform(0.4, 0.95) + rng.normal(0, 0.08, len(t)), 0.25, 1.0)
    if rng.random() < 0.3:  # a detector without a fall class (e.g. COCO person)
        fall_score = np.zeros_like(t)
    else:  # the detector labels a person down as "Fall" with some reliability
        p_fall_when_down = rng.uniform(0.6, 0.98)
        p_fall_when_up = rng.uniform(0.0, 0.08)
        is_fall = rng.random(len(t)) < np.where(down > 0.5, p_fall_when_down, p_fall_when_up)
        fall_score = np.where(is_fall, confidence, 0.0)

    keep = rng.random(len(t)) >= rng.uniform(0.0, 0.2)  # missed detections
    if rng.random() < 0.2:  # an occlusion gap
        start = rng.integers(len(t))
        keep[start : start + rng.integers(1, max(2, len(t) // 3))] = False
    if keep.sum() < 3:
        keep[:3] = True
    return SyntheticTrack(
        label=label, t_s=t[keep], xyxy=xyxy[keep].astype(np.float32), confidence=confidence[keep].astype(np.float32),
        fall_score=fall_score[keep].astype(np.float32), frame_width=frame_w, frame_height=frame_h,
    )
