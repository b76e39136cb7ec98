"""Cutting a video into shards planned from its keyframe index.

A shard owns the time range ``[t_start_s, t_end_s)``: it emits the detections in that
range and every clip window that starts in it. Shard lengths are whole multiples of the
clip length, so each clip window belongs to exactly one shard. Before its range a shard
decodes from the last keyframe at or before ``t_start_s - warmup_s`` and tracks through
the warm-up (analysed from ``warmup_from_s``) without emitting, so tracks and motion
features enter the range already established. The warm-up detections overlap the
previous shard's range; the stitch step matches tracks there to give one id per person.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from videolake.pipeline.decode import VideoInfo

__all__ = ["Shard", "plan_shards", "warmup_seconds", "SHARD_TRACK_STRIDE"]

# Track ids in shard files are shard_index * SHARD_TRACK_STRIDE + the shard's own id.
SHARD_TRACK_STRIDE = 1_000_000


@dataclass(frozen=True)
class Shard:
    index: int
    t_start_s: float
    t_end_s: float            # math.inf for the last shard
    decode_from_s: float      # a keyframe time (0 for the first shard)
    decode_from_frame: int    # frames before that keyframe
    warmup_from_s: float      # analysis starts here; emission starts at t_start_s

    @property
    def is_first(self) -> bool:
        return self.index == 0

    def owns(self, t_s: float) -> bool:
        return self.t_start_s - 1e-9 <= t_s < self.t_end_s - 1e-9

    def key(self) -> str:
        """Deterministic name of the shard's range, used in file names."""
        end = "end" if math.isinf(self.t_end_s) else f"{round(self.t_end_s * 1000):010d}"
        return f"s{self.index:05d}-{round(self.t_start_s * 1000):010d}-{end}"


def warmup_seconds(clip_seconds: float) -> float:
    return max(2.0, clip_seconds)


def plan_shards(info: VideoInfo, shard_seconds: float, clip_seconds: float) -> list[Shard]:
    """Shards of about ``shard_seconds`` (rounded to whole clips); 0 = one shard for the video."""
    duration_s = info.duration_s
    if shard_seconds <= 0 or not duration_s or not info.keyframes_s:
        return [Shard(0, 0.0, math.inf, 0.0, 0, 0.0)]
    length_s = max(1, math.ceil(shard_seconds / clip_seconds - 1e-9)) * clip_seconds
    count = max(1, math.ceil(duration_s / length_s - 1e-9))
    warmup_s = warmup_seconds(clip_seconds)
    shards = []
    for index in range(count):
        t_start = index * length_s
        t_end = math.inf if index == count - 1 else (index + 1) * length_s
        if index == 0:
            shards.append(Shard(0, 0.0, t_end, 0.0, 0, 0.0))
            continue
        warmup_from = max(0.0, t_start - warmup_s)
        k = bisect.bisect_right(info.keyframes_s, warmup_from + 1e-9) - 1
        k = max(0, k)
        decode_from, decode_frame = info.keyframes_s[k], info.keyframe_frame_indices[k]
        if k == 0:
            decode_from, decode_frame = 0.0, 0
        shards.append(Shard(index, t_start, t_end, decode_from, decode_frame, warmup_from))
    return shards
