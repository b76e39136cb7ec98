"""Decoding with PyAV: probing, and streaming frames sampled by presentation time.

Frames stream through one at a time; nothing holds a whole video in memory. Only the
frames the sampler keeps are converted to pixels.

Limits hold while decoding, not only in the header: FFmpeg's own ``max_pixels`` refuses to
allocate a frame over the limit (a stream may switch sizes mid-way), every decoded frame is
checked before it is converted, and a stream is cut off once it has decoded past
``max_duration_s`` (a stream may declare no duration, or a false one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from typing import IO, Iterator

import av
import numpy as np

from videolake.pipeline import storage
from videolake.pipeline.errors import DecodeError, SourceError

__all__ = ["VideoInfo", "Frame", "DecodeStats", "PtsSampler", "probe", "iter_frames", "use_hardware_decoding"]

# Give up on a video after this many packets in a row fail to decode.
_MAX_CONSECUTIVE_ERRORS = 50
# PyAV hardware device type frames are decoded on in this process (``use_hardware_decoding``), if any.
_hw_device_type: str | None = None
DEFAULT_MAX_PIXELS = 8192 * 8192
# The probe keeps keyframes at least this far apart: enough to plan shards, bounded for all-intra video.
KEYFRAME_SPACING_S = 1.0
# FFmpeg's demuxer limits: streams per container, bytes and time read to find them.
_CONTAINER_OPTIONS = {"max_streams": "32", "probesize": "5000000", "analyzeduration": "5000000"}


@dataclass(frozen=True)
class VideoInfo:
    """What a probe learns from the container, without decoding."""

    uri: str
    duration_s: float | None
    fps: float | None
    width: int
    height: int
    codec: str
    n_frames_estimate: int | None
    # Keyframes from the packets (no decoding), at least KEYFRAME_SPACING_S apart: their times, and
    # how many frames precede each.
    keyframes_s: tuple[float, ...] = ()
    keyframe_frame_indices: tuple[int, ...] = ()
    creation_time: str | None = None  # the container's (or stream's) creation_time tag, as written

    def without_keyframes(self) -> VideoInfo:
        """This info without the keyframe index: what a shard needs (its own keyframe is in its ``Shard``)."""
        return dataclasses.replace(self, keyframes_s=(), keyframe_frame_indices=())


@dataclass(frozen=True)
class Frame:
    """One decoded frame: BGR pixels of shape (height, width, 3) and its timestamps.

    ``after_keyframe``: a keyframe was decoded since the previous sampled frame (or this is one): the
    encoder coded the picture afresh there, so its pixels may differ from the frames before even
    where nothing moved.
    """

    image: np.ndarray
    frame_index: int
    t_s: float
    after_keyframe: bool = False

    def __repr__(self) -> str:
        key = ", after_keyframe" if self.after_keyframe else ""
        return f"Frame(image={self.image.shape}, frame_index={self.frame_index}, t_s={self.t_s:.3f}{key})"


@dataclass
class DecodeStats:
    """What happened while decoding; filled in as frames stream."""

    frames_decoded: int = 0
    frames_sampled: int = 0
    packet_errors: int = 0
    last_t_s: float | None = None
    warnings: list[str] = field(default_factory=list)


class PtsSampler:
    """Keeps the first frame at or after each tick of ``fps`` (by timestamp, not by count).

    ``fps == 0`` keeps every frame. Variable frame rate needs no special case.
    """

    def __init__(self, fps: float, eps_s: float = 1e-6) -> None:
        if fps < 0:
            raise ValueError(f"fps must be >= 0, got {fps}")
        self.fps = fps
        self._eps_s = eps_s
        self._next_t_s = -math.inf

    def take(self, t_s: float) -> bool:
        if self.fps == 0:
            return True
        if t_s < self._next_t_s - self._eps_s:
            return False
        self._next_t_s = (math.floor(t_s * self.fps + self._eps_s) + 1) / self.fps
        return True


def use_hardware_decoding(device_type: str | None) -> bool:
    """Decode frames on this process's GPU (``"cuda"``: NVDEC) where PyAV's FFmpeg supports the
    device type, or in software (``None``); returns whether hardware decoding is on. Decoded frames
    still arrive in memory; a video the hardware cannot open is decoded in software."""
    from av.codec.hwaccel import hwdevices_available

    global _hw_device_type
    _hw_device_type = device_type if device_type in hwdevices_available() else None
    return _hw_device_type is not None


def probe(
    uri: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS, max_duration_s: float | None = None,
    keyframes: bool = True,
) -> VideoInfo:
    """Read container and stream metadata, and the keyframe index from the packets.

    A container that declares no duration gets one from its packets (the last timestamp, or the
    packet count at the frame rate). Raises ``SourceError`` or ``DecodeError`` (also for a video
    over the size or length limits).
    """
    uri = os.fspath(uri)
    with _open(uri) as container:
        stream = _video_stream(container, uri)
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise DecodeError(f"{uri}: video stream declares no frame size")
        if width * height > max_pixels:
            raise DecodeError(f"{uri}: declared frame size {width}x{height} exceeds the limit of {max_pixels} pixels")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else None
        duration_s = _duration_s(container, stream)
        _check_duration(uri, duration_s, max_duration_s)
        key_s, key_index, demuxed_s = _keyframe_index(container, stream, fps) if keyframes else ((), (), None)
        if duration_s is None and demuxed_s:
            duration_s = demuxed_s
            _check_duration(uri, duration_s, max_duration_s)
        n_frames = stream.frames or (round(duration_s * fps) if duration_s and fps else None)
        return VideoInfo(
            uri=uri, duration_s=duration_s, fps=fps, width=width, height=height,
            codec=ctx.name or "unknown", n_frames_estimate=n_frames or None,
            keyframes_s=key_s, keyframe_frame_indices=key_index,
            creation_time=container.metadata.get("creation_time") or stream.metadata.get("creation_time"),
        )


def _check_duration(uri: str, duration_s: float | None, max_duration_s: float | None) -> None:
    if max_duration_s is not None and duration_s is not None and duration_s > max_duration_s:
        raise DecodeError(f"{uri}: duration {duration_s:.0f} s exceeds the limit of {max_duration_s:.0f} s")


def _keyframe_index(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, fps: float | None,
) -> tuple[tuple[float, ...], tuple[int, ...], float | None]:
    """Keyframe times at least ``KEYFRAME_SPACING_S`` apart and the number of packets (frames) before
    each, by demuxing only; and the stream's length from its packets (``None`` if they tell nothing)."""
    time_base = stream.time_base or Fraction(1, 90_000)
    start = stream.start_time or 0
    times: list[float] = []
    indices: list[int] = []
    count = 0
    last_s: float | None = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is not None:
                t_s = max(0.0, float((packet.pts - start) * time_base))
                last_s = t_s if last_s is None else max(last_s, t_s)
                if packet.is_keyframe and (not times or t_s >= times[-1] + KEYFRAME_SPACING_S):
                    times.append(t_s)
                    indices.append(count)
            count += 1
    except (av.error.FFmpegError, OSError):
        pass  # a damaged tail: the index covers what precedes it
    frame_s = 1.0 / fps if fps else 0.0
    length_s = last_s + frame_s if last_s is not None else (count * frame_s if count and fps else None)
    return tuple(times), tuple(indices), length_s


def iter_frames(
    uri: str | os.PathLike[str],
    analysis_fps: float = 0.0,
    stats: DecodeStats | None = None,
    start_s: float = 0.0,
    end_s: float = math.inf,
    first_frame_index: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_duration_s: float | None = None,
) -> Iterator[Frame]:
    """Yield frames sampled at ``analysis_fps`` (0 = every frame) with ``t_s`` from each frame's PTS.

    ``t_s`` counts from the stream's start. With ``start_s`` > 0 decoding seeks to the keyframe at
    or before that time and yields frames from ``start_s`` on; ``frame_index`` counts from
    ``first_frame_index`` at that keyframe, so it is the video's own frame index when ``start_s`` is
    one of ``VideoInfo.keyframes_s`` and ``first_frame_index`` its index. Frames at or after ``end_s``
    are not decoded. Corrupt packets are
    skipped and counted in ``stats``; a stream that ends early stops the iteration with a
    warning in ``stats``. FFmpeg refuses frames over ``max_pixels`` (counted as undecodable packets)
    and any decoded frame over it raises ``DecodeError``, as does decoding past ``max_duration_s``.
    Raises ``DecodeError`` when no frame at all can be decoded.
    """
    uri = os.fspath(uri)
    stats = stats if stats is not None else DecodeStats()
    sampler = PtsSampler(analysis_fps)
    with _open(uri, decoding=True) as container:
        stream = _video_stream(container, uri)
        stream.thread_type = "AUTO"
        stream.codec_context.options = {**stream.codec_context.options, "max_pixels": str(max_pixels)}
        time_base = stream.time_base or Fraction(1, 90_000)
        rate = stream.average_rate or stream.guessed_rate
        nominal_dt_s = 1.0 / float(rate) if rate else 1.0 / 25
        start_pts = stream.start_time
        declared_s = _duration_s(container, stream)
        if start_s > 0:
            container.seek(round(start_s / time_base) + (start_pts or 0), stream=stream, backward=True, any_frame=False)
        stats.frames_decoded = first_frame_index
        consecutive_errors = 0
        keyframe = False  # a keyframe decoded since the last sampled frame
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as exc:
                stats.warnings.append(f"stream ended early after {stats.frames_decoded} frames: {_short(exc)}")
                break
            try:
                decoded = packet.decode()
                consecutive_errors = 0
            except (av.error.FFmpegError, ValueError) as exc:
                stats.packet_errors += 1
                consecutive_errors += 1
                if consecutive_errors >= _MAX_CONSECUTIVE_ERRORS:
                    stats.warnings.append(f"gave up after {consecutive_errors} undecodable packets in a row: {_short(exc)}")
                    break
                continue
            for frame in decoded:
                if frame.pts is not None:
                    if start_pts is None:
                        start_pts = frame.pts
                    t_s = max(0.0, float((frame.pts - start_pts) * time_base))
                else:
                    t_s = 0.0 if stats.last_t_s is None else stats.last_t_s + nominal_dt_s
                if t_s >= end_s:
                    return
                if max_duration_s is not None and t_s > max_duration_s:
                    raise DecodeError(f"{uri}: decoded past {max_duration_s:.0f} s, the limit of a video's duration "
                                      f"(declared: {_seconds(declared_s)})")
                if frame.width * frame.height > max_pixels:
                    raise DecodeError(f"{uri}: frame {stats.frames_decoded} at {t_s:.2f} s is {frame.width}x{frame.height}, "
                                      f"over the limit of {max_pixels} pixels")
                index = stats.frames_decoded
                stats.frames_decoded += 1
                stats.last_t_s = t_s
                keyframe = keyframe or frame.key_frame
                if t_s < start_s - 1e-6:
                    continue
                if sampler.take(t_s):
                    stats.frames_sampled += 1
                    yield Frame(image=frame.to_ndarray(format="bgr24"), frame_index=index, t_s=t_s, after_keyframe=keyframe)
                    keyframe = False
    whole = start_s == 0 and end_s == math.inf
    if whole and declared_s and stats.last_t_s is not None and stats.last_t_s + 2 * nominal_dt_s < 0.95 * declared_s:
        stats.warnings.append(f"decoded up to {stats.last_t_s:.2f} s of a declared {declared_s:.2f} s (truncated?)")
    if stats.packet_errors:
        stats.warnings.append(f"{stats.packet_errors} packets could not be decoded and were skipped "
                              f"(damaged, or frames over the limit of {max_pixels} pixels)")
    if stats.frames_decoded == first_frame_index:
        detail = f" ({stats.warnings[0]})" if stats.warnings else ""
        raise DecodeError(f"{uri}: no frame could be decoded{detail}")


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:.0f} s"


def _duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


@contextlib.contextmanager
def _open(uri: str, decoding: bool = False) -> Iterator[av.container.InputContainer]:
    """The container, local or streamed from a bucket through a read-ahead file object; opened for
    hardware decoding where ``decoding`` and ``use_hardware_decoding`` say so."""
    if not storage.is_remote(uri):
        if not os.path.exists(uri):
            raise SourceError(f"{uri}: file not found")
        if os.path.getsize(uri) == 0:
            raise SourceError(f"{uri}: file is empty (0 bytes)")
        with _container(uri, uri, decoding) as container:
            yield container
        return
    reader = _Reader(storage.open_input(uri))
    with reader:
        if reader.size == 0:
            raise SourceError(f"{uri}: file is empty (0 bytes)")
        try:
            with _container(reader, uri, decoding) as container:
                yield container
        except DecodeError:
            reader.raise_storage_error(uri)  # a read that failed for good is the bucket's fault, not the video's
            raise
        reader.raise_storage_error(uri)


@contextlib.contextmanager
def _container(file: str | IO[bytes], uri: str, decoding: bool = False) -> Iterator[av.container.InputContainer]:
    container = _hardware_container(file) if decoding and _hw_device_type else None
    try:
        container = container or av.open(file, mode="r", metadata_errors="ignore", options=_CONTAINER_OPTIONS)
    except av.error.FFmpegError as exc:
        raise DecodeError(f"{uri}: not a readable video container: {_short(exc)}") from None
    except OSError as exc:
        raise SourceError(f"{uri}: cannot open: {exc}") from None
    with container:
        yield container


def _hardware_container(file: str | IO[bytes]) -> av.container.InputContainer | None:
    """The container opened for hardware decoding, or ``None`` where the device cannot open it."""
    from av.codec.hwaccel import HWAccel

    try:
        return av.open(file, mode="r", metadata_errors="ignore", options=_CONTAINER_OPTIONS,
                       hwaccel=HWAccel(device_type=_hw_device_type, allow_software_fallback=True))
    except (av.error.FFmpegError, OSError):
        if not isinstance(file, str):
            file.seek(0)
        return None


class _Reader:
    """A bucket file object for PyAV that remembers a read that failed after the client's retries."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self.size = getattr(file, "size", None)
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        try:
            return self._file.read(n)
        except Exception as exc:
            self.error = exc
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def raise_storage_error(self, uri: str) -> None:
        if self.error is not None:
            raise storage.storage_error(uri, self.error, "cannot read", SourceError)

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def _video_stream(container: av.container.InputContainer, uri: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        raise DecodeError(f"{uri}: no video stream (found: {kinds})")
    return container.streams.video[0]


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split("\n")[0][:200]
