"""Progress of a run: a live bar on a terminal, a log line every few seconds elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Any

from videolake.pipeline.decode import VideoInfo

__all__ = ["RunProgress", "expected_frames"]

_LOG_EVERY_S = 10.0


def expected_frames(info: VideoInfo, analysis_fps: float) -> int:
    """Frames the sampler will keep, from the probe (an estimate for variable frame rate)."""
    fps = info.fps or 25.0
    rate = min(analysis_fps, fps) if analysis_fps > 0 else fps
    if info.duration_s:
        return max(1, round(info.duration_s * rate))
    return info.n_frames_estimate or 1


class RunProgress:
    """Videos and frames done, frames/s and ETA."""

    def __init__(self, videos_total: int, analysis_fps: float, enabled: bool = True) -> None:
        self.videos_total = videos_total
        self.analysis_fps = analysis_fps
        self.frames_total = 0  # grows as probes report each video's length
        self.enabled = enabled
        self.interactive = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._t0 = time.perf_counter()
        self._last_log = 0.0

    def __enter__(self) -> RunProgress:
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                transient=False,
            )
            self._bar.__enter__()
            self._videos = self._bar.add_task("videos", total=self.videos_total, rate="")
            self._frames = self._bar.add_task("frames", total=self.frames_total, rate="")
        return self

    def expect(self, info: VideoInfo) -> None:
        """Add a probed video's expected frames to the total."""
        self.frames_total += expected_frames(info, self.analysis_fps)
        if self._bar is not None:
            self._bar.update(self._frames, total=self.frames_total)

    def update(self, videos_done: int, frames_done: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self._t0
        rate = frames_done / elapsed if elapsed > 0 else 0.0
        if self._bar is not None:
            self._bar.update(self._videos, completed=videos_done)
            self._bar.update(self._frames, completed=min(frames_done, self.frames_total), rate=f"{rate:.1f} frames/s")
        elif elapsed - self._last_log >= _LOG_EVERY_S or videos_done == self.videos_total:
            self._last_log = elapsed
            remaining = max(0, self.frames_total - frames_done)
            eta = f"{remaining / rate:.0f} s" if rate > 0 else "?"
            print(f"videos {videos_done}/{self.videos_total}  frames {frames_done}/{self.frames_total}  "
                  f"{rate:.1f} frames/s  ETA {eta}", file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
