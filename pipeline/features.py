"""Per-frame features of one tracked person, from its box and its 17 COCO keypoints: pure numpy.

Inference (``clips``), training on labels (``labels``) and the synthetic generator
(``synthetic``) all call ``track_features`` through ``window_features``, so they cannot drift.

Keypoints are normalised to the body: positions are relative to the mid-hip (or mid-shoulder,
or the box centre) in units of the body scale (the torso length, kept from collapsing by a
quarter of the box's longer side), in image orientation, so a lying body reads as horizontal
whatever its size. Rates are per second and use the previous detection of the same track. A
frame without a usable skeleton has all pose features zero and ``pose_ok`` 0: the model then
sees only the box (``box-only`` runs have no pose at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videolake.pipeline.motion import stabilize

__all__ = [
    "FEATURE_NAMES", "N_FEATURES", "TrackSeries", "track_features", "window_features", "skeleton_ok",
    "person_class_ids", "BODY_JOINTS", "KP_MIN_CONF",
]

# Keypoint indices (COCO order, see ``pose.KEYPOINT_NAMES``).
NOSE, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 0, 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 11, 12, 13, 14, 15, 16
BODY_JOINTS = (NOSE, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST, L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE)
_JOINT_NAMES = ("nose", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
                "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle")
KP_MIN_CONF = 0.5           # a keypoint counts as seen at this confidence
_MIN_SKELETON_KEYPOINTS = 8  # of 17, with a shoulder and a hip among them
_MIN_POSE_CONFIDENCE = 0.4  # the pose model's own confidence that the skeleton is a person's
_MAX_REL = 4.0               # normalised joint positions are clipped to +-4 body scales
_MAX_DT_S = 2.0
_MAX_RATE = 20.0
_MIN_NET_S = 0.4             # net displacement is measured over at least this long

FEATURE_NAMES = (
    "pose_ok",                                   # 1 when the frame has a usable skeleton
    "pose_confidence",                           # the pose model's person confidence (0: none)
    *(f"{j}_{a}" for j in _JOINT_NAMES for a in ("x", "y", "seen")),  # joints relative to the hip, body scales
    "torso_sin", "torso_cos",                    # torso direction (hip -> shoulders) against image up
    "l_hip_angle", "r_hip_angle",                # angle torso-thigh at the hip / pi (1 = straight)
    "l_knee_angle", "r_knee_angle",              # angle thigh-shin at the knee / pi
    "hip_above_ankles",                          # (ankle y - hip y) / body scale: ~2 standing, ~0 lying
    "ankle_spread",                              # distance between the ankles / body scale
    "log_aspect",                                # log(box width / box height)
    "h_norm",                                    # box height / frame height
    "confidence",                                # detector confidence
    "hip_vx", "hip_vy", "hip_speed",             # mid-hip velocity in body scales per second
    "vx_bh_per_s", "vy_bh_per_s", "speed_bh_per_s",  # box centre velocity in box heights per second
    "dlogh_per_s", "dlogaspect_per_s",           # rates of log box height and log aspect
    "dtorso_per_s",                              # torso angle rate, radians per second
    "dhip_above_ankles_per_s", "dankle_spread_per_s",
    "dt_s",                                      # seconds since the previous detection (0 for the first)
    "net_speed_bh_per_s",                        # box centre's displacement since the first row / elapsed time, box heights per second
    "camera_speed",                              # the camera's own motion: its shift in frame heights plus its log zoom, per second
)
N_FEATURES = len(FEATURE_NAMES)
_I = {name: i for i, name in enumerate(FEATURE_NAMES)}


def skeleton_ok(keypoints: np.ndarray, pose_confidence: np.ndarray) -> np.ndarray:
    """(n,) True where a skeleton is usable evidence of a person.

    The pose model matched a person (``pose_confidence``), at least 8 of 17 keypoints are seen
    with a shoulder and a hip among them, and the body is in order along its own axis (whatever
    its rotation): the head beyond the shoulders, the knees and ankles beyond the hips.
    """
    kp = np.asarray(keypoints, np.float32).reshape(-1, 17, 3)
    seen = kp[:, :, 2] >= KP_MIN_CONF
    ok = (np.asarray(pose_confidence) >= _MIN_POSE_CONFIDENCE) & (seen.sum(1) >= _MIN_SKELETON_KEYPOINTS)
    ok &= seen[:, [L_SHOULDER, R_SHOULDER]].any(1) & seen[:, [L_HIP, R_HIP]].any(1)
    for n in np.flatnonzero(ok):
        ok[n] = _ordered(kp[n], seen[n])
    return ok


def _ordered(kp: np.ndarray, seen: np.ndarray) -> bool:
    shoulders, hips = _mean(kp, seen, (L_SHOULDER, R_SHOULDER)), _mean(kp, seen, (L_HIP, R_HIP))
    axis = shoulders - hips
    length = float(np.hypot(*axis))
    if length < 1e-3:
        return False
    along = (kp[:, :2] - hips) @ (axis / length) / length  # 0 at the hips, 1 at the shoulders
    if seen[NOSE] and along[NOSE] < 0.5:
        return False
    knees = [along[j] for j in (L_KNEE, R_KNEE) if seen[j]]
    ankles = [along[j] for j in (L_ANKLE, R_ANKLE) if seen[j]]
    if any(a > 0.5 for a in knees) or any(a > 0.5 for a in ankles):
        return False
    return not (knees and ankles and min(ankles) > max(knees) + 0.5)


def _mean(kp: np.ndarray, seen: np.ndarray, joints: tuple[int, ...]) -> np.ndarray:
    picked = [kp[j, :2] for j in joints if seen[j]]
    return np.mean(picked, axis=0) if picked else np.full(2, np.nan, np.float32)


def track_features(
    t_s: np.ndarray,
    xyxy: np.ndarray,
    confidence: np.ndarray,
    keypoints: np.ndarray | None,
    pose_confidence: np.ndarray | None,
    frame_width: int,
    frame_height: int,
    camera: np.ndarray | None = None,
) -> np.ndarray:
    """Features (n, N_FEATURES) for one track's detections, sorted by ``t_s``.

    ``keypoints`` (n, 17, 3) and ``pose_confidence`` (n,) may be None (no pose: box features only).
    ``camera`` (n, 3) is each frame's ``motion.CameraPose`` (scale, x_px, y_px): positions are taken
    back to the camera's reference before rates are computed, so a camera's pan or zoom is not read
    as the person's motion (None: a camera that does not move). Rates use the previous detection;
    the first row has zero rates. Prepend the track's last earlier detection and drop the first
    output row to carry rates across windows.
    """
    t_s = np.asarray(t_s, dtype=np.float64)
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    n = len(t_s)
    out = np.zeros((n, N_FEATURES), dtype=np.float32)
    if n == 0:
        return out
    w = np.maximum(xyxy[:, 2] - xyxy[:, 0], 1.0)
    h = np.maximum(xyxy[:, 3] - xyxy[:, 1], 1.0)
    cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
    log_h, log_aspect = np.log(h), np.log(w / h)
    out[:, _I["log_aspect"]] = log_aspect
    out[:, _I["h_norm"]] = h / frame_height
    out[:, _I["confidence"]] = confidence
    # Body frame: origin and scale per detection (box centre and size where there is no skeleton).
    origin = np.stack([cx, cy], axis=1)
    scale = np.maximum(w, h) / 3.0
    torso = np.full(n, np.nan)
    hip_above = np.zeros(n)
    spread = np.zeros(n)
    if keypoints is not None and pose_confidence is not None:
        kp = np.asarray(keypoints, np.float64).reshape(n, 17, 3)
        pose_conf = np.asarray(pose_confidence, np.float64)
        usable = skeleton_ok(kp, pose_conf)
        out[:, _I["pose_ok"]] = usable
        out[:, _I["pose_confidence"]] = pose_conf
        for r in np.flatnonzero(usable):
            origin[r], scale[r], torso[r], hip_above[r], spread[r] = _body(kp[r], out[r], w[r], h[r])
    # Rates from the previous detection of the track, in the camera's reference (its motion taken out).
    if n > 1:
        zoom = np.asarray(camera, np.float64)[:, 0] if camera is not None else np.ones(n)
        centre, origin = stabilize(np.stack([cx, cy], axis=1), camera), stabilize(origin, camera)
        h_ref, scale_ref = h / zoom, scale / zoom
        log_h = np.log(h_ref)
        dt = np.maximum(np.diff(t_s), 1e-3)
        h_mid = (h_ref[1:] + h_ref[:-1]) / 2
        vx, vy = np.diff(centre[:, 0]) / h_mid / dt, np.diff(centre[:, 1]) / h_mid / dt
        s_mid = (scale_ref[1:] + scale_ref[:-1]) / 2
        hip_v = np.diff(origin, axis=0) / s_mid[:, None] / dt[:, None]
        both = out[1:, _I["pose_ok"]] * out[:-1, _I["pose_ok"]] > 0  # pose rates only between two skeletons
        dtorso = np.where(both, _wrap(np.diff(np.nan_to_num(torso))) / dt, 0.0)
        rates = {
            "hip_vx": np.where(both, hip_v[:, 0], 0.0), "hip_vy": np.where(both, hip_v[:, 1], 0.0),
            "hip_speed": np.where(both, np.hypot(hip_v[:, 0], hip_v[:, 1]), 0.0),
            "vx_bh_per_s": vx, "vy_bh_per_s": vy, "speed_bh_per_s": np.hypot(vx, vy),
            "dlogh_per_s": np.diff(log_h) / dt, "dlogaspect_per_s": np.diff(log_aspect) / dt,
            "dtorso_per_s": dtorso,
            "dhip_above_ankles_per_s": np.where(both, np.diff(hip_above) / dt, 0.0),
            "dankle_spread_per_s": np.where(both, np.diff(spread) / dt, 0.0),
        }
        for name, values in rates.items():
            out[1:, _I[name]] = np.clip(values, -_MAX_RATE, _MAX_RATE)
        out[1:, _I["dt_s"]] = np.minimum(dt, _MAX_DT_S)
        # Displacement over the whole series so far: frame-to-frame rates of a still person are mostly the box's
        # jitter, their sum over a second or more is not.
        elapsed = t_s[1:] - t_s[0]
        shift = np.hypot(*(centre[1:] - centre[0]).T) / np.cumsum(h_mid) * np.arange(1, n)
        out[1:, _I["net_speed_bh_per_s"]] = np.where(elapsed >= _MIN_NET_S, np.clip(shift / np.maximum(elapsed, 1e-3), 0, _MAX_RATE), 0.0)
        if camera is not None:
            cam = np.asarray(camera, np.float64)
            moved = np.hypot(*np.diff(cam[:, 1:], axis=0).T) / frame_height + np.abs(np.diff(np.log(np.maximum(cam[:, 0], 1e-3))))
            out[1:, _I["camera_speed"]] = np.clip(moved / dt, 0, _MAX_RATE)
    return out


def _body(kp: np.ndarray, row: np.ndarray, w: float, h: float) -> tuple[np.ndarray, float, float, float, float]:
    """Fill one row's pose features; return (origin, scale, torso angle, hip height above ankles, ankle spread)."""
    seen = kp[:, 2] >= KP_MIN_CONF
    shoulders, hips = _mean(kp, seen, (L_SHOULDER, R_SHOULDER)), _mean(kp, seen, (L_HIP, R_HIP))
    axis = shoulders - hips
    scale = max(float(np.hypot(*axis)), max(w, h) / 4.0)
    first = _I["nose_x"]
    for k, j in enumerate(BODY_JOINTS):
        if seen[j]:
            row[first + 3 * k: first + 3 * k + 2] = np.clip((kp[j, :2] - hips) / scale, -_MAX_REL, _MAX_REL)
            row[first + 3 * k + 2] = 1.0
    torso = float(np.arctan2(axis[0], -axis[1]))  # 0 upright, +-pi/2 horizontal
    row[_I["torso_sin"]], row[_I["torso_cos"]] = np.sin(torso), np.cos(torso)
    for name, (a, b, c) in (("l_hip_angle", (L_SHOULDER, L_HIP, L_KNEE)), ("r_hip_angle", (R_SHOULDER, R_HIP, R_KNEE)),
                            ("l_knee_angle", (L_HIP, L_KNEE, L_ANKLE)), ("r_knee_angle", (R_HIP, R_KNEE, R_ANKLE))):
        if seen[a] and seen[b] and seen[c]:
            row[_I[name]] = _angle(kp[a, :2], kp[b, :2], kp[c, :2]) / np.pi
    ankles = [kp[j, :2] for j in (L_ANKLE, R_ANKLE) if seen[j]]
    hip_above = float((np.mean(ankles, axis=0)[1] - hips[1]) / scale) if ankles else 0.0
    spread = float(np.hypot(*(kp[L_ANKLE, :2] - kp[R_ANKLE, :2])) / scale) if len(ankles) == 2 else 0.0
    row[_I["hip_above_ankles"]] = np.clip(hip_above, -_MAX_REL, _MAX_REL)
    row[_I["ankle_spread"]] = np.clip(spread, 0, _MAX_REL)
    return hips, scale, torso, hip_above, spread


def _angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """The angle at ``b`` between ``b→a`` and ``b→c``, radians."""
    u, v = a - b, c - b
    norm = np.hypot(*u) * np.hypot(*v)
    return float(np.arccos(np.clip(np.dot(u, v) / norm, -1.0, 1.0))) if norm > 1e-9 else np.pi


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


@dataclass(frozen=True)
class TrackSeries:
    """One track's detections sorted by time, with the frame size: what the features need.

    ``keypoints`` (n, 17, 3) and ``pose_confidence`` (n,) are None for box-only results.
    """

    t_s: np.ndarray
    xyxy: np.ndarray
    confidence: np.ndarray
    keypoints: np.ndarray | None
    pose_confidence: np.ndarray | None
    frame_width: int
    frame_height: int
    camera: np.ndarray | None = None  # (n, 3) each frame's camera pose (scale, x_px, y_px); None: a still camera

    def features(self) -> np.ndarray:
        return track_features(self.t_s, self.xyxy, self.confidence, self.keypoints, self.pose_confidence,
                              self.frame_width, self.frame_height, self.camera)

    def take(self, index: np.ndarray) -> TrackSeries:
        return TrackSeries(self.t_s[index], self.xyxy[index], self.confidence[index],
                           None if self.keypoints is None else self.keypoints[index],
                           None if self.pose_confidence is None else self.pose_confidence[index],
                           self.frame_width, self.frame_height, None if self.camera is None else self.camera[index])


def window_features(window: TrackSeries, previous: TrackSeries | None) -> np.ndarray:
    """Features of a track's detections in one clip window; rates carried from ``previous``.

    ``previous`` is the track's last detection in the window before (one row), or None when the
    track was not seen there. The one function inference and training both use.
    """
    if previous is None or len(previous.t_s) == 0:
        return window.features()
    def both(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
        return None if a is None or b is None else np.concatenate([a[-1:], b])

    joined = TrackSeries(
        np.r_[previous.t_s[-1:], window.t_s], np.vstack([previous.xyxy[-1:], window.xyxy]),
        np.r_[previous.confidence[-1:], window.confidence], both(previous.keypoints, window.keypoints),
        both(previous.pose_confidence, window.pose_confidence), window.frame_width, window.frame_height,
        both(previous.camera, window.camera),
    )
    return joined.features()[1:]


def person_class_ids(names: dict[int, str]) -> set[int]:
    """Classes whose tracks get actions: ``person`` where the detector has it, else every class."""
    persons = {i for i, n in names.items() if n.lower() in ("person", "people", "pedestrian", "human")}
    return persons or set(names)
