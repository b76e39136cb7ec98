"""Small test videos made of real frames, and broken ones, generated with PyAV.

Each asset is described by a ``MediaAsset`` that tests assert against.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.samples import sample_paths


@dataclass(frozen=True)
class MediaAsset:
    path: Path
    n_frames: int
    fps: float | None
    width: int
    height: int
    duration_s: float
    broken: str | None = None  # why the file is bad, for broken assets


def real_frames(name: str = "carphone_pristine.mp4", limit: int = 120, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """BGR frames of a bundled sample video, optionally resized (width, height)."""
    out = []
    with av.open(str(sample_paths()[name])) as container:
        for frame in container.decode(video=0):
            if size is not None:
                frame = frame.reformat(width=size[0], height=size[1])
            out.append(frame.to_ndarray(format="bgr24"))
            if len(out) >= limit:
                break
    return out


def encode(
    path: Path,
    frames: list[np.ndarray],
    fps: float = 25,
    codec: str = "mpeg4",
    pix_fmt: str = "yuv420p",
    pts_s: list[float] | None = None,
) -> MediaAsset:
    """Encode BGR frames; ``pts_s`` gives each frame's time for variable frame rate."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if pts_s is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            if pts_s is not None:
                frame.pts, frame.time_base = round(pts_s[i] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    duration = (pts_s[-1] + 1 / fps) if pts_s is not None else len(frames) / fps
    return MediaAsset(path, len(frames), fps, width, height, duration)


def make_corpus(directory: Path) -> dict[str, MediaAsset]:
    """Odd and broken videos: each key names what is special about it."""
    directory.mkdir(parents=True, exist_ok=True)
    people = real_frames("carphone_pristine.mp4", limit=60)
    assets: dict[str, MediaAsset] = {}

    # variable frame rate: gaps of 20-120 ms between frames
    rng = np.random.default_rng(7)
    pts = np.cumsum(np.r_[0, rng.uniform(0.02, 0.12, len(people) - 1)]).tolist()
    assets["vfr"] = encode(directory / "vfr.mkv", people, fps=25, pts_s=pts)

    odd = [f[:143, :175] for f in people[:40]]
    assets["odd_size"] = encode(directory / "odd_size.mp4", odd, fps=25)
    assets["mjpeg_avi"] = encode(directory / "mjpeg.avi", people[:40], fps=15, codec="mjpeg", pix_fmt="yuvj420p")

    for ext in ("mkv", "mp4"):
        full = encode(directory / f"truncated_src.{ext}", people, fps=25)
        data = full.path.read_bytes()
        (directory / f"truncated.{ext}").write_bytes(data[: int(len(data) * 0.6)])
        full.path.unlink()
    # Matroska streams: the first 60% still decodes. MP4 keeps its index at the end: nothing does.
    assets["truncated"] = MediaAsset(directory / "truncated.mkv", -1, 25, 176, 144, -1, broken="truncated at 60%")
    assets["truncated_mp4"] = MediaAsset(directory / "truncated.mp4", 0, 25, 176, 144, -1, broken="index lost")

    (directory / "zero_bytes.mp4").write_bytes(b"")
    assets["zero_bytes"] = MediaAsset(directory / "zero_bytes.mp4", 0, None, 0, 0, 0, broken="empty file")

    (directory / "not_a_video.mp4").write_text("this is a text file with a video extension\n" * 50)
    assets["text"] = MediaAsset(directory / "not_a_video.mp4", 0, None, 0, 0, 0, broken="text, not video")

    audio_path = directory / "audio_only.mp4"
    with av.open(str(audio_path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.linspace(0, 440 * 2 * np.pi, 16000)) * 0.3).astype(np.float32)[None]
        for start in range(0, 16000, 1024):
            chunk = samples[:, start : start + 1024]
            if chunk.shape[1] < 1024:
                break
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assets["audio_only"] = MediaAsset(audio_path, 0, None, 0, 0, 1.0, broken="no video stream")
    return assets
