"""Small test videos made of real frames, and broken ones, generated with PyAV.

Each asset is described by a ``MediaAsset`` that tests assert against.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from videolake.pipeline.samples import sample_paths


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


def looped_video(
    path: Path, seconds: float, fps: float = 25, name: str = "carphone_pristine.mp4", size: tuple[int, int] | None = None,
) -> MediaAsset:
    """A long video of real frames: the sample played forwards and backwards until ``seconds``, optionally resized."""
    frames = real_frames(name, limit=120, size=size)
    cycle = frames + frames[::-1]
    n = int(seconds * fps)
    return encode(path, [cycle[i % len(cycle)] for i in range(n)], fps=fps)


def make_damaged_corpus(directory: Path) -> dict[str, Path]:
    """At least 50 damaged variants of a real video, each named by what was done to it."""
    directory.mkdir(parents=True, exist_ok=True)
    people = real_frames("carphone_pristine.mp4", limit=50)
    sources = {ext: encode(directory / f"_source.{ext}", people, fps=25).path.read_bytes() for ext in ("mp4", "mkv")}
    out: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        out[name] = directory / name
        out[name].write_bytes(data)

    rng = np.random.default_rng(11)
    for ext, data in sources.items():
        for fraction in (0.02, 0.1, 0.15, 0.25, 0.3, 0.4, 0.55, 0.65, 0.7, 0.85, 0.97):
            put(f"truncated_{int(fraction * 100):02d}.{ext}", data[: int(len(data) * fraction)])
        for k in range(6):
            flipped = bytearray(data)
            for pos in rng.integers(0, len(data), size=20 * (k + 1)):
                flipped[pos] ^= 0xFF
            put(f"bitflips_{k}.{ext}", bytes(flipped))
        for k, (start, stop) in enumerate(((0.0, 0.05), (0.3, 0.4), (0.5, 0.9), (0.1, 0.12), (0.8, 1.0))):
            zeroed = bytearray(data)
            zeroed[int(len(data) * start): int(len(data) * stop)] = bytes(int(len(data) * stop) - int(len(data) * start))
            put(f"zeroed_{k}.{ext}", bytes(zeroed))
    mp4, mkv = sources["mp4"], sources["mkv"]
    put("swapped_headers_a.mp4", mkv[:64] + mp4[64:])
    put("swapped_headers_b.mkv", mp4[:64] + mkv[64:])
    put("header_only.mp4", mp4[:200])
    put("mkv_named_avi.avi", mkv)
    put("mp4_named_webm.webm", mp4)
    put("text_named_mov.mov", b"not a video\n" * 100)
    put("random_bytes.mp4", rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    put("zero_bytes.mkv", b"")
    for w, h in ((60000, 60000), (9000, 9000)):  # past FFmpeg's own limit; past videolake's max_pixels
        put(f"huge_dimensions_{w}.mp4", f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + bytes(1000))
    for k in range(2):
        put(f"tail_garbage_{k}.mkv", mkv + rng.integers(0, 256, 5_000 * (k + 1), dtype=np.uint8).tobytes())
    for p in directory.glob("_source.*"):
        p.unlink()
    return out


def with_creation_time(src: Path, dst: Path, creation_time: str) -> Path:
    """``src``'s video stream remuxed (no re-encoding) into ``dst`` with a container ``creation_time`` tag."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        out.metadata["creation_time"] = creation_time
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = copy
            out.mux(packet)
    return dst
