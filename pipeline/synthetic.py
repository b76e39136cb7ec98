"""Synthetic labelled person tracks for the six default actions, rendered as detector + pose output.

Each sample is what the detector, tracker and pose model would give for one person over one
clip window: timestamps, boxes in pixels, detector confidences, 17 COCO keypoints with
confidences and the pose model's person confidence. Features then come from
``videolake.pipeline.features.window_features``, the same code inference uses.

The person is a 3D stick figure (COCO joints) moved by a kinematic model of each action:

- ``standing``: feet planted, sway, arms at rest or gesturing, turning on the spot;
- ``walking``: a gait cycle (hip and knee flexion, arm swing) at 0.5-1.8 m/s, cadence from speed;
- ``running``: a running cycle (flight phase, deep knee flexion, bent arms, lean) at 2.2-6 m/s;
- ``sitting``: hips and knees flexed on a seat, small movements, sometimes in a moving vehicle
  or with the legs hidden (a table, a desk);
- ``lying``: the body on the ground, on its back, front or side, barely moving;
- ``falling``: upright, then a fall of 0.4-1.3 s (tipping about the ankles or buckling at the
  knees, in any direction), then lying.

It is seen by a camera at a random height, pitch and distance (perspective), heading and
frame size, from 4 to 15 analysed frames per second with timestamp jitter, with keypoint noise,
keypoint drop-outs (far-side limbs, the face when turned away, the legs behind something),
missed detections, box noise and camera motion (a moving or shaking camera moves every
point). Body proportions vary around adult anthropometry; ``skeleton_bank`` proportions from
real footage, when given, replace them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videolake.pipeline.actions import ACTIONS
from videolake.pipeline.features import TrackSeries, window_features

__all__ = ["SyntheticTrack", "generate_tracks", "generate_features", "GENERATOR_VERSION"]

GENERATOR_VERSION = 4
_FPS_CHOICES = (4.0, 5.0, 6.0, 8.0, 8.0, 8.0, 10.0, 12.0, 15.0)
_FRAME_SIZES = ((640, 360), (1280, 720), (1920, 1080), (640, 272), (768, 576), (176, 144), (480, 640), (1024, 768), (352, 288))
# COCO joint indices.
_NOSE, _LEYE, _REYE, _LEAR, _REAR = 0, 1, 2, 3, 4
_LSH, _RSH, _LEL, _REL, _LWR, _RWR, _LHIP, _RHIP, _LKN, _RKN, _LAN, _RAN = range(5, 17)


@dataclass(frozen=True)
class SyntheticTrack(TrackSeries):
    """A generated track (one clip window plus the frame before it) and its true action (index into ``ACTIONS``)."""

    label: int = -1

    def window_features(self) -> np.ndarray:
        """Features of the window as inference computes them: a detection before the window (t < 0) only carries rates in."""
        if self.t_s[0] >= 0:  # the track starts inside the window
            return window_features(self, None)
        return window_features(self.take(np.arange(1, len(self.t_s))), self.take(np.array([0])))


def generate_features(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` feature sequences and their labels (indices into ``ACTIONS``), balanced by class."""
    tracks = generate_tracks(n, seed)
    return [t.window_features() for t in tracks], np.array([t.label for t in tracks], dtype=np.int64)


def generate_tracks(n: int, seed: int) -> list[SyntheticTrack]:
    rng = np.random.default_rng(seed)
    return [_one_track(i % len(ACTIONS), rng) for i in range(n)]


@dataclass
class _Body:
    """Bone lengths in metres."""

    pelvis_w: float
    shoulder_w: float
    torso: float
    neck_head: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> _Body:
        height = rng.uniform(1.45, 1.95)
        j = lambda: rng.uniform(0.92, 1.08)  # noqa: E731 - per-bone variation
        return cls(0.17 * height * j(), 0.23 * height * j(), 0.30 * height * j(), 0.13 * height * j(),
                   0.17 * height * j(), 0.15 * height * j(), 0.245 * height * j(), 0.245 * height * j())


@dataclass
class _Pose:
    """Joint angles (radians) of one frame, in the body's frame (x forward, y up, z left)."""

    hip_flex: tuple[float, float] = (0.0, 0.0)      # thigh forward (+) / back (-), left and right
    knee_flex: tuple[float, float] = (0.0, 0.0)     # >= 0, shin bends back
    hip_abd: tuple[float, float] = (0.0, 0.0)       # thigh outwards
    shoulder_flex: tuple[float, float] = (0.0, 0.0)  # arm forward (+)
    shoulder_abd: tuple[float, float] = (0.1, 0.1)  # arm outwards
    elbow_flex: tuple[float, float] = (0.1, 0.1)    # forearm forward/up
    torso_pitch: float = 0.0                        # lean forward (+)
    head_yaw: float = 0.0


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _limb(flex: float, abd: float, side: float) -> np.ndarray:
    """Unit vector of a limb hanging down, swung forward by ``flex`` and outwards by ``abd``."""
    return np.array([np.sin(flex) * np.cos(abd), -np.cos(flex) * np.cos(abd), side * np.sin(abd)])


def _joints(body: _Body, pose: _Pose) -> np.ndarray:
    """(17, 3) COCO joints in the body frame, mid-hip at the origin."""
    out = np.zeros((17, 3))
    torso = _rot_z(-pose.torso_pitch)  # pitch forward about the z (left) axis
    up = torso @ np.array([0.0, 1.0, 0.0])
    neck = body.torso * up
    for side, hip, knee, ankle, k in ((1, _LHIP, _LKN, _LAN, 0), (-1, _RHIP, _RKN, _RAN, 1)):
        out[hip] = [0, 0, side * body.pelvis_w / 2]
        thigh = _limb(pose.hip_flex[k], pose.hip_abd[k], side)
        out[knee] = out[hip] + body.thigh * thigh
        shin = _limb(pose.hip_flex[k] - pose.knee_flex[k], pose.hip_abd[k] * 0.5, side)
        out[ankle] = out[knee] + body.shin * shin
    for side, sh, el, wr, k in ((1, _LSH, _LEL, _LWR, 0), (-1, _RSH, _REL, _RWR, 1)):
        out[sh] = neck + torso @ np.array([0, -0.03, side * body.shoulder_w / 2])
        arm = torso @ _limb(pose.shoulder_flex[k], pose.shoulder_abd[k], side)
        out[el] = out[sh] + body.upper_arm * arm
        fore = torso @ _limb(pose.shoulder_flex[k] + pose.elbow_flex[k], pose.shoulder_abd[k] * 0.6, side)
        out[wr] = out[el] + body.forearm * fore
    head = neck + body.neck_head * 0.6 * up
    face = torso @ (_rot_y(pose.head_yaw) @ np.array([1.0, 0.0, 0.0]))
    side_axis = torso @ (_rot_y(pose.head_yaw) @ np.array([0.0, 0.0, 1.0]))
    out[_NOSE] = head + 0.09 * face
    out[_LEYE], out[_REYE] = head + 0.07 * face + 0.035 * side_axis + 0.03 * up, head + 0.07 * face - 0.035 * side_axis + 0.03 * up
    out[_LEAR], out[_REAR] = head + 0.075 * side_axis, head - 0.075 * side_axis
    return out


def _gait(t: np.ndarray, rng: np.random.Generator, run: bool, body: _Body) -> tuple[list[_Pose], np.ndarray, float]:
    """Poses of a walking or running cycle, the pelvis's height bob (m) and the speed (m/s)."""
    speed = rng.uniform(2.2, 6.0) if run else rng.uniform(0.5, 1.8)
    cadence_hz = (rng.uniform(2.5, 3.4) if run else np.clip(1.2 + 0.45 * speed + rng.normal(0, 0.12), 1.3, 2.3)) / 2  # strides
    phase = rng.uniform(0, 2 * np.pi)
    amp = np.radians(rng.uniform(30, 50) if run else rng.uniform(10, 22) + 5 * (speed - 1))
    knee_swing = np.radians(rng.uniform(85, 120) if run else rng.uniform(35, 62))
    knee_stance = np.radians(rng.uniform(25, 40) if run else rng.uniform(3, 15))
    arm = np.radians(rng.uniform(25, 45) if run else rng.uniform(6, 28))
    elbow = np.radians(rng.uniform(70, 110) if run else rng.uniform(5, 35))
    lean = np.radians(rng.uniform(5, 18) if run else rng.uniform(-3, 6))
    carry = rng.random() < (0.0 if run else 0.25)  # a bag, a phone, hands in pockets: one arm still
    legs = _stance_abduction(body, rng.uniform(0.0, 0.2))  # step width: feet land under the body
    poses, bob = [], []
    for ti in t:
        ph = 2 * np.pi * cadence_hz * ti + phase
        poses.append(_Pose(
            hip_flex=(amp * np.sin(ph), amp * np.sin(ph + np.pi)),
            knee_flex=(knee_stance + knee_swing * max(0.0, np.sin(ph + 0.9)) ** 2,
                       knee_stance + knee_swing * max(0.0, np.sin(ph + np.pi + 0.9)) ** 2),
            hip_abd=(legs, legs),
            shoulder_flex=(0.05 if carry else arm * np.sin(ph + np.pi), arm * np.sin(ph)),
            shoulder_abd=(0.12, 0.12),
            elbow_flex=(0.6 if carry else elbow, elbow),
            torso_pitch=lean, head_yaw=0.0,
        ))
        bob.append((0.06 if run else 0.025) * np.cos(2 * ph))
    return poses, np.array(bob), speed


def _stance_abduction(body: _Body, ankles_apart_m: float) -> float:
    """The hip abduction (radians, negative: legs converging) that puts the ankles ``ankles_apart_m`` apart."""
    return float(np.arcsin(np.clip((ankles_apart_m - body.pelvis_w) / 2 / (body.thigh + body.shin), -0.5, 0.5)))


def _arms_at_rest(rng: np.random.Generator) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    kind = rng.integers(5)
    if kind == 0:  # hanging
        return (rng.uniform(-0.1, 0.15),) * 2, (0.1, 0.1), (rng.uniform(0, 0.3),) * 2
    if kind == 1:  # crossed / holding something in front
        return (0.5, 0.5), (0.1, 0.1), (1.6, 1.6)
    if kind == 2:  # phone to the ear
        return (0.1, 0.3), (0.1, 0.15), (0.2, 2.4)
    if kind == 3:  # hands on hips
        return (-0.2, -0.2), (0.6, 0.6), (1.5, 1.5)
    return (rng.uniform(-0.2, 0.9), rng.uniform(-0.2, 0.9)), (rng.uniform(0, 0.6),) * 2, (rng.uniform(0, 1.8), rng.uniform(0, 1.8))


def _one_track(label: int, rng: np.random.Generator) -> SyntheticTrack:
    action = ACTIONS[label]
    fps = float(rng.choice(_FPS_CHOICES)) * rng.uniform(0.97, 1.03)
    window_s = float(rng.choice((2.0, 2.0, 2.0, 1.0, 1.5, 3.0, 4.0)))
    t = np.arange(-1.0 / fps, window_s - 1e-9, 1.0 / fps)  # one frame before the window carries rates in
    t = np.sort(t + rng.normal(0, 0.08 / fps, len(t)) * (rng.random() < 0.3))
    n = len(t)
    body = _Body.random(rng)
    leg_len = body.thigh + body.shin
    # Facing and direction of motion (0 = towards +x, right in the image); half the time towards or away from the camera.
    yaw = rng.uniform(-np.pi, np.pi) if rng.random() < 0.5 else rng.choice([-1, 1]) * np.pi / 2 + rng.normal(0, 0.35)
    position = np.zeros((n, 3))  # world position of the mid-hip (x right, y up, z away from the camera)
    roll = np.zeros(n)           # rotation of the whole body about its facing axis (lying on a side) ...
    tip = np.zeros(n)            # ... and about its left axis (lying on the back/front, falling forward/back)
    pelvis_h = np.full(n, leg_len * 0.99)
    poses: list[_Pose]
    if action in ("walking", "running"):
        poses, bob, speed = _gait(t, rng, run=action == "running", body=body)
        direction = np.array([np.cos(yaw), 0.0, -np.sin(yaw)])
        position += np.outer(t - t[0], direction * speed)
        pelvis_h = pelvis_h * (0.97 if action == "walking" else 0.93) + bob
        turn = rng.normal(0, 0.15)  # a slight curve
        yaws = yaw + turn * (t - t[0])
    elif action == "standing":
        shoulder, abd, elbow = _arms_at_rest(rng)
        gesture_hz = rng.uniform(0.5, 1.5) if rng.random() < 0.35 else 0.0
        stance = rng.uniform(0.0, 0.18)                    # one foot a little ahead
        legs = _stance_abduction(body, rng.uniform(0.02, 0.35))  # feet under the body, 2-35 cm apart
        knees = rng.uniform(0, 0.08, 2)
        lean, head = rng.uniform(-0.03, 0.06), rng.uniform(-0.4, 0.4)
        poses = []
        for ti in t:
            g = 0.4 * np.sin(2 * np.pi * gesture_hz * ti) if gesture_hz else 0.0
            poses.append(_Pose(hip_flex=(stance / 2, -stance / 2), knee_flex=tuple(knees), hip_abd=(legs, legs),
                               shoulder_flex=(shoulder[0] + g, shoulder[1]), shoulder_abd=abd, elbow_flex=(elbow[0] + abs(g), elbow[1]),
                               torso_pitch=lean, head_yaw=head + 0.15 * np.sin(0.7 * ti)))
        sway = rng.uniform(0.005, 0.04)
        position[:, 0] += sway * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6))
        if rng.random() < 0.25:  # a small step or a shuffle
            position[:, 0] += np.clip((t - rng.uniform(0, window_s)) * rng.uniform(-0.4, 0.4), -0.25, 0.25)
        yaws = yaw + (rng.uniform(-1.5, 1.5) * np.clip((t - rng.uniform(0, window_s)) / 0.8, 0, 1) if rng.random() < 0.3 else 0.0)
    elif action == "sitting":
        hip = rng.uniform(1.2, 1.75)
        knee = rng.uniform(1.0, 1.9)
        shoulder, abd, elbow = _arms_at_rest(rng)
        lean = rng.uniform(-0.3, 0.45)
        spread = rng.uniform(-0.25, 0.25)   # one leg ahead of the other
        knee_spread = rng.uniform(-0.3, 0.3)
        legs = rng.uniform(-0.05, 0.3)      # knees together or apart
        head = rng.uniform(-0.5, 0.5)
        poses = [_Pose(hip_flex=(hip, hip + spread), knee_flex=(knee, knee + knee_spread), hip_abd=(legs, legs),
                       shoulder_flex=(shoulder[0] + 0.3, shoulder[1] + 0.3), shoulder_abd=abd, elbow_flex=elbow,
                       torso_pitch=lean + 0.05 * np.sin(ti), head_yaw=head + 0.15 * np.sin(0.5 * ti)) for ti in t]
        pelvis_h[:] = rng.uniform(0.35, 0.65)
        if rng.random() < 0.2:  # in a moving vehicle, a cart, a wheelchair
            position += np.outer(t - t[0], np.array([np.cos(yaw), 0.0, -np.sin(yaw)]) * rng.uniform(0.5, 5.0))
        yaws = yaw + rng.uniform(-0.2, 0.2) * (t - t[0])
    else:  # lying, falling
        poses, pelvis_h, roll, tip, position, yaws = _down(action, t, body, yaw, rng, window_s)
    world = np.zeros((n, 17, 3))
    for i in range(n):
        joints = _joints(body, poses[i])
        rotation = _rot_y(yaws[i] if np.ndim(yaws) else yaws) @ _rot_z(-tip[i]) @ _rot_x(roll[i])
        world[i] = joints @ rotation.T + position[i] + [0.0, pelvis_h[i], 0.0]
    if action in ("lying", "falling"):  # nothing goes through the floor
        world[..., 1] -= np.minimum(world[..., 1].min(axis=1, keepdims=True), 0.0)
    return _observe(label, t, world, rng)


def _down(action: str, t: np.ndarray, body: _Body, yaw: float, rng: np.random.Generator, window_s: float):  # noqa: ANN202
    """Lying, or standing/walking then falling: poses, pelvis height, roll, tip, position, yaw per frame."""
    n = len(t)
    leg_len = body.thigh + body.shin
    side = rng.integers(3)  # 0 on the back, 1 on the front, 2 on a side
    lying_tip = {0: -np.pi / 2, 1: np.pi / 2, 2: 0.0}[side]
    lying_roll = {0: 0.0, 1: 0.0, 2: rng.choice([-1, 1]) * np.pi / 2}[side]
    bend = rng.uniform(0, 0.6) if side < 2 else rng.uniform(0.3, 1.4)  # side-lying curls up
    lying_pose = _Pose(hip_flex=(bend + rng.normal(0, 0.1), bend + rng.normal(0, 0.1)), knee_flex=(bend * 1.2, bend * 1.1),
                       hip_abd=(rng.uniform(0, 0.2),) * 2, shoulder_flex=(rng.uniform(-0.3, 2.8), rng.uniform(-0.3, 2.8)),
                       shoulder_abd=(rng.uniform(0, 1.2),) * 2, elbow_flex=(rng.uniform(0, 1.5),) * 2)
    position = np.zeros((n, 3))
    position[:, 0] += rng.normal(0, 0.01, n).cumsum() * 0.2  # a little movement
    if action == "lying":
        return [lying_pose] * n, np.full(n, body.pelvis_w * 0.5), np.full(n, lying_roll), np.full(n, lying_tip), position, yaw
    # Falling: upright until t_fall, down by t_fall + duration, lying after.
    t_fall = rng.uniform(-0.2, max(0.0, window_s - 0.6))
    duration = rng.uniform(0.4, 1.3)
    s = np.clip((t - t_fall) / duration, 0, 1)
    s = s * s  # accelerating, as a body tipping under gravity
    buckle = rng.random() < 0.4  # knees give way first: the pelvis drops, then the torso goes down
    walking = rng.random() < 0.5
    upright, bob, speed = _gait(t, rng, run=False, body=body) if walking else ([_Pose()] * n, np.zeros(n), 0.0)
    direction = np.array([np.cos(yaw), 0.0, -np.sin(yaw)])
    if walking:
        position += np.outer(np.minimum(t, t_fall) - t[0], direction * speed)
    poses = []
    for i in range(n):
        a = float(s[i])
        base = upright[i] if a == 0 else _Pose()
        if buckle:
            knees = np.radians(100) * min(1.0, a * 2)
            poses.append(_Pose(hip_flex=(knees * 0.8 * (1 - a) + lying_pose.hip_flex[0] * a,) * 2,
                               knee_flex=(knees * (1 - a) + lying_pose.knee_flex[0] * a,) * 2,
                               shoulder_flex=(1.2 * a, 1.0 * a), shoulder_abd=(0.3 * a + 0.1,) * 2, elbow_flex=(0.4,) * 2))
        elif a > 0:
            poses.append(_Pose(hip_flex=(0.3 * a, 0.1 * a), knee_flex=(0.3 * a, 0.2 * a), shoulder_flex=(2.0 * a, 1.6 * a),
                               shoulder_abd=(0.2 + 0.6 * a,) * 2, elbow_flex=(0.3,) * 2))
        else:
            poses.append(base)
    tip = lying_tip * s if side < 2 else np.zeros(n)
    roll = lying_roll * s if side == 2 else np.zeros(n)
    standing_h = leg_len * 0.97 + (bob if walking else 0.0)
    low_h = body.pelvis_w * 0.5
    if buckle:
        pelvis_h = standing_h + (low_h - standing_h) * np.clip(s * 1.6, 0, 1)
    else:  # tipping about the feet: the pelvis follows an arc
        pelvis_h = low_h + (standing_h - low_h) * np.cos(s * np.pi / 2)
        position += np.outer(np.sin(s * np.pi / 2) * leg_len * 0.7, direction * (1 if side != 0 else -1))
    return poses, pelvis_h, roll, tip, position, yaw


def _runs(rng: np.random.Generator, shape: tuple[int, int], p_hidden: float, stay: float = 0.85) -> np.ndarray:
    """Visibility (True: seen) hidden with probability ``p_hidden`` on average, in runs: each frame keeps the
    previous frame's state with probability ``stay``."""
    out = np.empty(shape, dtype=bool)
    out[0] = rng.random(shape[1]) >= p_hidden
    for i in range(1, shape[0]):
        fresh = rng.random(shape[1]) >= p_hidden
        out[i] = np.where(rng.random(shape[1]) < stay, out[i - 1], fresh)
    return out


def _observe(label: int, t: np.ndarray, world: np.ndarray, rng: np.random.Generator) -> SyntheticTrack:
    """Project the 3D joints through a random camera into detector and pose-model output."""
    n = len(t)
    frame_w, frame_h = _FRAME_SIZES[rng.integers(len(_FRAME_SIZES))]
    pitch = rng.uniform(0.0, 0.7)  # camera looking down
    distance = rng.uniform(4.0, 30.0)
    height_px = frame_h * rng.uniform(0.08, 0.9)  # how tall a standing person appears
    focal = height_px * distance / 1.7
    offset = world[0, 11:13].mean(axis=0)  # centre the person at the start
    rel = world - [offset[0], 0.0, offset[2]]
    cos_p, sin_p = np.cos(pitch), np.sin(pitch)
    camera_y = rel[..., 1] - 1.0 - distance * np.tan(pitch) * 0.0  # the camera looks at hip height, from above when pitched
    depth = np.maximum(distance + rel[..., 2] * cos_p - camera_y * sin_p, 0.5)
    u = focal * rel[..., 0] / depth
    v = -focal * (camera_y * cos_p + rel[..., 2] * sin_p) / depth
    cx, cy = frame_w * rng.uniform(0.15, 0.85), frame_h * rng.uniform(0.3, 0.8)
    xy = np.stack([u + cx, v + cy], axis=-1)
    # The camera pose the motion estimator reports (motion.CameraMotion): a still camera, near the identity.
    camera = np.column_stack([np.ones(n), rng.normal(0, 0.003, (n, 2)) * height_px])
    if rng.random() < 0.35:  # a moving camera (pan, travelling forward or back) or a shaking one
        pan = rng.normal(0, 0.25, 2) * height_px * (t - t[0])[:, None]
        zoom = np.exp(rng.normal(0, 0.15) * (t - t[0]))  # travelling: everything grows or shrinks ...
        focus = np.array([frame_w * rng.uniform(0.3, 0.7), frame_h * rng.uniform(0.3, 0.6)])  # ... away from a vanishing point
        shake = rng.normal(0, rng.uniform(0.002, 0.015), (n, 2)) * height_px
        xy = (xy - focus) * zoom[:, None, None] + focus + (pan + shake)[:, None, :]
        if rng.random() < 0.85:  # the estimator follows the scene, roughly (people at other depths move otherwise)
            shift = focus * (1 - zoom)[:, None] + pan + shake
            camera = np.column_stack([zoom * np.exp(rng.normal(0, 0.004, n)), shift + rng.normal(0, 0.01, (n, 2)) * height_px])
    # What the pose model sees: jitter, confidences, joints hidden by the body or by things.
    scale_px = np.maximum(np.linalg.norm(xy[:, [5, 6]].mean(1) - xy[:, [11, 12]].mean(1), axis=-1), height_px * 0.1)
    noise = rng.uniform(0.01, 0.05)  # keypoint jitter in torso lengths
    kp_xy = xy + rng.normal(0, 1, xy.shape) * noise * scale_px[:, None, None]
    # Joints come and go in runs, as occlusions do, not frame by frame.
    seen = _runs(rng, (n, 17), rng.uniform(0.0, 0.1))
    facing_away = rng.random() < 0.3
    if facing_away:
        seen[:, :5] &= _runs(rng, (n, 5), 0.8)
    seen[:, 1:5] &= _runs(rng, (n, 4), rng.uniform(0.0, 0.8))  # faces are small: eyes and ears often missed
    if rng.random() < 0.35:  # far-side limbs
        far = rng.choice([[7, 9, 13, 15], [8, 10, 14, 16]])
        seen[:, far] &= _runs(rng, (n, 4), 0.6)
    if rng.random() < 0.12:  # legs hidden (behind a car, a desk): only the upper body
        seen[:, 13:17] = False
        if rng.random() < 0.5:
            seen[:, 11:13] = False
    if rng.random() < 0.1:  # a small or blurred person: the pose model gives up on some frames
        seen &= (rng.random(n) > rng.uniform(0.1, 0.5))[:, None]
    kp_conf = np.where(seen, rng.uniform(0.55, 0.995, (n, 17)), rng.uniform(0.0, 0.45, (n, 17)))
    pose_confidence = np.clip(rng.uniform(0.45, 0.95) + rng.normal(0, 0.05, n), 0.26, 1.0)
    pose_confidence[seen.sum(1) == 0] = 0.0
    keypoints = np.concatenate([kp_xy, kp_conf[..., None]], axis=-1).astype(np.float32)
    keypoints[~seen] = np.where(rng.random((int((~seen).sum()), 1)) < 0.5, 0.0, keypoints[~seen])  # unseen: often zeros
    # The detector's box: the body's extent plus the head above the nose, feet and clothes, with noise.
    head = 0.12 * scale_px
    x1 = xy[..., 0].min(1) - 0.15 * scale_px
    x2 = xy[..., 0].max(1) + 0.15 * scale_px
    y1 = xy[..., 1].min(1) - head
    y2 = xy[..., 1].max(1) + 0.1 * scale_px
    if rng.random() < 0.12 and label != ACTIONS.index("lying"):  # legs hidden for the detector too
        y2 = np.minimum(y2, xy[:, [11, 12], 1].mean(1) + 0.3 * scale_px)
    box_noise = rng.uniform(0.01, 0.06)
    h = np.maximum(y2 - y1, 2.0)
    xyxy = np.stack([x1, y1, x2, y2], axis=1) + rng.normal(0, box_noise, (n, 4)) * h[:, None]
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, frame_w)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, frame_h)
    xyxy[:, 2] = np.maximum(xyxy[:, 2], xyxy[:, 0] + 2)
    xyxy[:, 3] = np.maximum(xyxy[:, 3], xyxy[:, 1] + 2)
    confidence = np.clip(rng.uniform(0.35, 0.95) + rng.normal(0, 0.08, n), 0.25, 1.0)
    keep = rng.random(n) >= rng.uniform(0.0, 0.3)  # missed detections
    if rng.random() < 0.15:  # an occlusion gap
        start = rng.integers(n)
        keep[start : start + rng.integers(1, max(2, n // 3))] = False
    first = 0
    if rng.random() < 0.4:  # the track starts or ends inside the window (it enters, leaves, or is lost)
        span = max(4, int(round(n * rng.uniform(0.35, 1.0))))
        first = int(rng.integers(0, max(1, n - span + 1)))  # first > 0: nothing before the window to carry
        keep[:first] = False
        keep[first + span:] = False
    if first == 0:
        keep[0] = True  # the frame before the window: rates carry in
    if keep[1:].sum() < 3:
        keep[1:4] = True
    return SyntheticTrack(
        label=label, t_s=t[keep], xyxy=xyxy[keep].astype(np.float32), confidence=confidence[keep].astype(np.float32),
        keypoints=keypoints[keep], pose_confidence=pose_confidence[keep].astype(np.float32),
        frame_width=frame_w, frame_height=frame_h, camera=camera[keep],
    )
