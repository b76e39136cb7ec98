"""Annotated clips on demand: the source video's frames of a time range plus the lake's rows.

The source is decoded by the runs' own decoder (``videolake.pipeline.decode.iter_frames``), so a
frame's ``t_s`` is the one the lake's rows carry; only the requested range is decoded (PyAV
seeks to the keyframe before ``t_start_s``). Boxes and labels are drawn with supervision's
annotators (OpenCV fonts: nothing is downloaded). A frame shows the detections of the latest
analysed frame at or before it, held for at most ``hold_s``; analysed frames are sparser than
the video's frames.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import duckdb
import numpy as np

from videolake.pipeline.decode import iter_frames
from videolake.pipeline.errors import ConfigError, LakeError

__all__ = ["VideoRecord", "Overlay", "RenderResult", "find_video", "load_overlay", "annotate", "draw_skeletons", "render_clip"]


@dataclass(frozen=True)
class VideoRecord:
    """One analysed video of the lake under one config_hash."""

    video_id: str
    config_hash: str
    uri: str
    status: str
    width: int
    height: int
    fps: float | None
    duration_s: float | None


@dataclass(frozen=True)
class Overlay:
    """The lake's rows for one video in a time range, as arrays sorted by ``t_s``."""

    t_s: np.ndarray            # (n,) detection times
    xyxy: np.ndarray           # (n, 4) pixels of the original frame
    confidence: np.ndarray     # (n,)
    track_id: np.ndarray       # (n,) -1 where untracked
    class_name: np.ndarray     # (n,) str
    clips: list[tuple[int, float, float, str, float | None]]  # (track_id, t_start_s, t_end_s, action, confidence)
    hold_s: float              # how long a detection stays drawn after its frame
    keypoints: np.ndarray | None = None  # (n, 17, 3) x, y, confidence; zeros where no skeleton; None: no pose in the run

    def __post_init__(self) -> None:
        n = len(self.t_s)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape ({n}, 4), got {self.xyxy.shape}")
        for name in ("confidence", "track_id", "class_name"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} must have length {n}, got {len(getattr(self, name))}")
        if self.keypoints is not None and self.keypoints.shape != (n, 17, 3):
            raise ValueError(f"keypoints must have shape ({n}, 17, 3), got {self.keypoints.shape}")

    def __len__(self) -> int:
        return len(self.t_s)

    def at(self, t_s: float) -> np.ndarray:
        """Indices of the detections to draw at time ``t_s``."""
        times = np.unique(self.t_s)
        k = int(np.searchsorted(times, t_s + 1e-6, side="right")) - 1
        if k < 0 or t_s - times[k] > self.hold_s:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.t_s == times[k])

    def action_of(self, track_id: int, t_s: float) -> tuple[str, float | None] | None:
        for tid, start, end, action, conf in self.clips:
            if tid == track_id and start <= t_s < end:
                return action, conf
        return None

    def clips_cover(self, t_s: float) -> bool:
        """Whether any clip window at ``t_s`` is in the lake (so a track without one got no action there)."""
        return any(start <= t_s < end for _, start, end, _, _ in self.clips)


@dataclass(frozen=True)
class RenderResult:
    path: Path
    video_id: str
    config_hash: str
    t_start_s: float
    t_end_s: float
    frames_written: int
    boxes_drawn: int
    fps: float
    width: int
    height: int


def find_video(con: duckdb.DuckDBPyConnection, video_id: str, config_hash: str | None = None) -> VideoRecord:
    """The lake's row for ``video_id``; without ``config_hash``, the one of the latest run."""
    rows = con.execute(
        "SELECT v.video_id, v.config_hash, v.uri, v.status, v.width, v.height, v.fps, v.duration_s "
        "FROM videos v LEFT JOIN runs r USING (run_id) WHERE v.video_id = ? "
        "ORDER BY r.finished_at DESC NULLS LAST, v.config_hash", [video_id],
    ).fetchall()
    if not rows:
        known = [r[0] for r in con.execute("SELECT DISTINCT video_id FROM videos ORDER BY 1 LIMIT 20").fetchall()]
        raise ConfigError(f"video {video_id!r} is not in the lake; videos there: {', '.join(known) or 'none'}")
    if config_hash is not None:
        rows = [r for r in rows if r[1] == config_hash]
        if not rows:
            raise ConfigError(f"video {video_id!r} has no results under config_hash {config_hash!r}")
    record = VideoRecord(*rows[0])
    if record.status != "ok":
        raise ConfigError(f"video {video_id!r} failed in its run ({record.status}); nothing to render")
    return record


def load_overlay(con: duckdb.DuckDBPyConnection, video: VideoRecord, t_start_s: float, t_end_s: float) -> Overlay:
    """Detections and clips of ``video`` overlapping ``[t_start_s, t_end_s)``."""
    key = [video.video_id, video.config_hash]
    det = con.execute(
        "SELECT t_s, x1, y1, x2, y2, confidence, coalesce(track_id, -1), class_name, kp_x, kp_y, kp_conf FROM detections "
        "WHERE video_id = ? AND config_hash = ? AND t_s >= ? AND t_s < ? ORDER BY t_s, track_id",
        [*key, t_start_s - 2.0, t_end_s],  # from a little earlier, so the first frames have boxes to hold
    ).fetchall()
    keypoints = None
    if any(r[8] is not None for r in det):
        keypoints = np.zeros((len(det), 17, 3), np.float32)
        for i, r in enumerate(det):
            if r[8] is not None:
                keypoints[i] = np.stack([r[8], r[9], r[10]], axis=1)
    clips = con.execute(
        "SELECT track_id, t_start_s, t_end_s, action, action_confidence FROM clips "
        "WHERE video_id = ? AND config_hash = ? AND t_end_s > ? AND t_start_s < ? ORDER BY t_start_s, track_id",
        [*key, t_start_s, t_end_s],
    ).fetchall()
    times = np.array([r[0] for r in det], dtype=np.float64)
    analysed = np.unique(con.execute(
        "SELECT DISTINCT t_s FROM detections WHERE video_id = ? AND config_hash = ?", key).fetchnumpy()["t_s"])
    # Hold boxes for about one analysis interval (the median gap between frames with detections).
    hold_s = float(np.clip(np.median(np.diff(analysed)) * 1.5, 0.05, 1.0)) if len(analysed) > 1 else 0.5
    return Overlay(
        t_s=times,
        xyxy=np.array([r[1:5] for r in det], dtype=np.float32).reshape(-1, 4),
        confidence=np.array([r[5] for r in det], dtype=np.float32),
        track_id=np.array([r[6] for r in det], dtype=np.int64),
        class_name=np.array([r[7] for r in det], dtype=object),
        clips=[(int(c[0]) if c[0] is not None else -1, float(c[1]), float(c[2]), str(c[3]), c[4]) for c in clips],
        hold_s=hold_s,
        keypoints=keypoints,
    )


def label_for(overlay: Overlay, i: int, t_s: float) -> str:
    """``#<track> <class> <conf>`` plus the track's clip at ``t_s``: ``<action> <confidence>``, ``unknown``
    (too little evidence), or ``no action`` (a tracked box the run did not take for a person)."""
    track_id = int(overlay.track_id[i])
    head = f"#{track_id}" if track_id >= 0 else "untracked"
    text = f"{head} {overlay.class_name[i]} {overlay.confidence[i]:.2f}"
    action = overlay.action_of(track_id, t_s) if track_id >= 0 else None
    if action is not None:
        name, conf = action
        text += f" | {name}" + (f" {conf:.2f}" if conf is not None else "")
    elif track_id >= 0 and overlay.clips_cover(t_s):
        text += " | no action"
    return text


def annotate(image: np.ndarray, overlay: Overlay, t_s: float) -> tuple[np.ndarray, int]:
    """A copy of ``image`` with the overlay's boxes and labels at ``t_s``; returns it and the box count."""
    import supervision as sv

    idx = overlay.at(t_s)
    if len(idx) == 0:
        return image.copy(), 0
    track_ids = overlay.track_id[idx]
    detections = sv.Detections(
        xyxy=overlay.xyxy[idx].astype(np.float32), confidence=overlay.confidence[idx],
        class_id=np.zeros(len(idx), dtype=int), tracker_id=track_ids,
    )
    colors = np.where(track_ids >= 0, track_ids, 0).astype(np.int64)  # one colour per track
    text_scale = float(np.clip(image.shape[0] / 1440, 0.35, 1.2))  # readable on 176x144 and on 4K alike
    out = sv.BoxAnnotator(thickness=max(2, round(image.shape[0] / 360))).annotate(image.copy(), detections, custom_color_lookup=colors)
    if overlay.keypoints is not None:
        out = draw_skeletons(out, overlay.keypoints[idx])
    out = sv.LabelAnnotator(text_scale=text_scale, text_padding=max(2, round(text_scale * 8)), smart_position=True).annotate(
        out, detections, labels=[label_for(overlay, int(i), t_s) for i in idx], custom_color_lookup=colors)
    return out, len(idx)


def draw_skeletons(image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Bones and joints of the (n, 17, 3) keypoints (x, y, confidence) seen with enough confidence."""
    import supervision as sv

    from videolake.pipeline.features import KP_MIN_CONF
    from videolake.pipeline.pose import SKELETON

    if len(keypoints) == 0:
        return image
    points = sv.KeyPoints(xy=keypoints[:, :, :2].astype(np.float32), keypoint_confidence=keypoints[:, :, 2].astype(np.float32),
                          visible=keypoints[:, :, 2] >= KP_MIN_CONF)
    thickness = max(1, round(image.shape[0] / 480))
    image = sv.EdgeAnnotator(color=sv.Color.from_hex("#00e5ff"), thickness=thickness,
                             edges=[(a + 1, b + 1) for a, b in SKELETON]).annotate(image, points)
    return sv.VertexAnnotator(color=sv.Color.from_hex("#ff2d95"), radius=max(1, thickness + 1)).annotate(image, points)


def render_clip(
    con: duckdb.DuckDBPyConnection,
    video_id: str,
    out: str | os.PathLike[str],
    t_start_s: float = 0.0,
    t_end_s: float | None = None,
    config_hash: str | None = None,
) -> RenderResult:
    """Write an H.264 mp4 of ``[t_start_s, t_end_s)`` of the video with the lake's annotations.

    ``t_end_s`` defaults to the video's end. The file appears only when complete.
    """
    if t_start_s < 0:
        raise ConfigError(f"start must be >= 0 s, got {t_start_s}")
    video = find_video(con, video_id, config_hash)
    if video.duration_s and t_start_s >= video.duration_s:
        raise ConfigError(f"start {t_start_s} s is past the end of {video_id} ({video.duration_s:.2f} s)")
    end_s = t_end_s if t_end_s is not None else (video.duration_s or 0.0) + 1.0
    if end_s <= t_start_s:
        raise ConfigError(f"end ({end_s} s) must be after start ({t_start_s} s)")
    overlay = load_overlay(con, video, t_start_s, end_s)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"_tmp-{uuid.uuid4().hex}{path.suffix or '.mp4'}"
    fps = Fraction(video.fps or 25).limit_denominator(1001)
    frames = boxes = 0
    first_t_s = last_t_s = None
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.pix_fmt = "yuv420p"
            stream.width, stream.height = video.width - video.width % 2, video.height - video.height % 2
            stream.options = {"crf": "23", "preset": "veryfast"}
            for frame in iter_frames(video.uri, start_s=t_start_s, end_s=end_s):  # every frame of the range
                image, n = annotate(frame.image, overlay, frame.t_s)
                image = np.ascontiguousarray(image[: stream.height, : stream.width])
                out_frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                out_frame.pts = frames
                container.mux(stream.encode(out_frame))
                frames += 1
                boxes += n
                first_t_s = frame.t_s if first_t_s is None else first_t_s
                last_t_s = frame.t_s
            container.mux(stream.encode(None))
        if frames == 0:
            raise ConfigError(f"no frames of {video_id} between {t_start_s} s and {end_s} s (video lasts {video.duration_s} s)")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return RenderResult(path, video.video_id, video.config_hash, float(first_t_s), float(last_t_s), frames, boxes,
                        float(fps), stream.width, stream.height)


def lake_connection(lake: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """A lake connection for rendering (``LakeError`` when the lake is missing)."""
    from videolake.pipeline.query import connect

    try:
        return connect(lake)
    except duckdb.Error as exc:
        raise LakeError(f"cannot read lake {lake}: {str(exc).splitlines()[0]}") from None
