"""Progress of a run: a live bar on a terminal, a log line every few seconds elsewhere, and a
Prefect progress artifact on the flow run. Only the work left counts: a resumed run's totals
leave out the videos and shards an earlier run finished."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Sequence

from videolake.pipeline.decode import VideoInfo
from videolake.pipeline.shards import Shard

__all__ = ["RunProgress", "expected_frames"]

_LOG_EVERY_S = 10.0
_BAR_EVERY_S = 0.2
_ARTIFACT_EVERY_S = 10.0
ARTIFACT_KEY = "videolake-progress"


def expected_frames(info: VideoInfo, analysis_fps: float, shards: Sequence[Shard] | None = None) -> int:
    """Frames the sampler will keep, from the probe (an estimate for variable frame rate): of the
    whole video, or of ``shards`` only."""
    fps = info.fps or 25.0
    rate = min(analysis_fps, fps) if analysis_fps > 0 else fps
    if shards is not None and not shards:
        return 0
    if not info.duration_s:
        return info.n_frames_estimate or 1
    seconds = info.duration_s if shards is None else sum(
        max(0.0, min(s.t_end_s, info.duration_s) - s.t_start_s) for s in shards)
    return max(1, round(seconds * rate))


class RunProgress:
    """Videos and frames done, frames/s and ETA, over the videos and shards this run analyses."""

    def __init__(self, videos_total: int, analysis_fps: float, enabled: bool = True, artifact: bool = True) -> None:
        self.videos_total = videos_total
        self.analysis_fps = analysis_fps
        self.frames_total = 0  # grows as probes report each video's shards to run
        self.videos_probed = 0
        self.enabled = enabled
        self.interactive = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._t0 = time.perf_counter()
        self._last = {"bar": -_BAR_EVERY_S, "log": 0.0, "artifact": 0.0}
        self._artifact_id = None
        self._artifact = artifact

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
        if self._artifact and _in_flow_run():
            from prefect.artifacts import create_progress_artifact

            self._artifact_id = create_progress_artifact(
                0.0, key=ARTIFACT_KEY, description=f"videos done of {self.videos_total} to analyse")
        return self

    def expect(self, info: VideoInfo, shards: Sequence[Shard]) -> None:
        """Add the expected frames of a probed video's shards to run to the total."""
        self.frames_total += expected_frames(info, self.analysis_fps, shards)
        self.videos_probed += 1
        if self._bar is not None:
            self._bar.update(self._frames, total=self.frames_expected)

    @property
    def frames_expected(self) -> int:
        """The probed videos' frames, and while some videos are not probed yet, as many again per video for
        those: the fan-out probes as it goes, so at 100,000 videos the probed ones are a small part for a while."""
        if 0 < self.videos_probed < self.videos_total:
            return round(self.frames_total * self.videos_total / self.videos_probed)
        return self.frames_total

    def update(self, videos_done: int, frames_done: Callable[[], int]) -> None:
        """Show the counts where one is due; ``frames_done`` is asked only then."""
        elapsed = time.perf_counter() - self._t0
        finished = videos_done == self.videos_total
        if self._artifact_id is not None and (self._due("artifact", elapsed, _ARTIFACT_EVERY_S) or finished):
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self._artifact_id, 100.0 * videos_done / max(1, self.videos_total),
                                     description=f"{videos_done} of {self.videos_total} videos done")
        if not self.enabled:
            return
        if self._bar is not None and (self._due("bar", elapsed, _BAR_EVERY_S) or finished):
            frames = frames_done()
            rate = frames / elapsed if elapsed > 0 else 0.0
            self._bar.update(self._videos, completed=videos_done)
            self._bar.update(self._frames, completed=min(frames, self.frames_expected), rate=f"{rate:.1f} frames/s")
        elif self._bar is None and (self._due("log", elapsed, _LOG_EVERY_S) or finished):
            frames = frames_done()
            rate = frames / elapsed if elapsed > 0 else 0.0
            expected = self.frames_expected
            remaining = max(0, expected - frames)
            eta = f"{remaining / rate:.0f} s" if rate > 0 else "?"
            about = "" if expected == self.frames_total else "about "
            print(f"videos {videos_done}/{self.videos_total}  frames {frames}/{about}{expected}  "
                  f"{rate:.1f} frames/s  ETA {about}{eta}", file=sys.stderr, flush=True)

    def _due(self, what: str, elapsed: float, every_s: float) -> bool:
        if elapsed - self._last[what] < every_s:
            return False
        self._last[what] = elapsed
        return True

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None
