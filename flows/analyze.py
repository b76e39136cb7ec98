"""The ``analyze`` flow: discover → probe → fan out to Ray actors → gather → write the run record.

Each video is one Prefect task run with its own state: ``Completed`` when analysed,
``Failed`` (with the reason) when the video is bad. Lost workers are retried by Prefect;
bad videos are not (a decode error would fail the same way again).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline.analyze import VideoJob, VideoResult
from pipeline.config import RunConfig
from pipeline.decode import VideoInfo, probe
from pipeline.errors import DecodeError, SourceError
from pipeline.lake import table_path, write_table
from pipeline.models import action_classes
from pipeline.plan import plan_run
from pipeline.sources import VideoSource
from flows.progress import RunProgress

__all__ = ["analyze", "RunSummary", "VideoFailed"]


# Task runs in flight at once: enough to keep every actor busy, bounded for huge listings.
_MAX_IN_FLIGHT = 64


class VideoFailed(Exception):
    """Raised by a video's task so Prefect marks it Failed; carries the result for the lake."""

    def __init__(self, result: VideoResult) -> None:
        super().__init__(result.error)
        self.result = result


def _retry_unless_bad_video(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's callback signature
    return not isinstance(state.data, VideoFailed)


@dataclass
class RunSummary:
    run_id: str
    lake: str
    config_hash: str
    videos_ok: int = 0
    videos_failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    frames_analyzed: int = 0
    n_detections: int = 0
    n_tracks: int = 0
    clips_by_action: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    workers: int = 0

    @property
    def frames_per_s(self) -> float:
        return self.frames_analyzed / self.wall_s if self.wall_s > 0 else 0.0

    def lines(self) -> list[str]:
        out = [
            f"run {self.run_id} → {self.lake} (config {self.config_hash})",
            f"videos: {self.videos_ok} ok, {self.videos_failed} failed",
            f"frames analysed: {self.frames_analyzed}  detections: {self.n_detections}  tracks: {self.n_tracks}",
            "clips: " + (", ".join(f"{a} {n}" for a, n in sorted(self.clips_by_action.items(), key=lambda kv: -kv[1])) or "none"),
            f"wall time: {self.wall_s:.1f} s  ({self.frames_per_s:.1f} frames/s on {self.workers} worker(s))",
        ]
        out += [f"failed: {uri}: {error}" for uri, error in self.failures]
        return out


@task(name="probe", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE,
      retry_condition_fn=_retry_unless_bad_video, task_run_name="probe {source.video_id}")
def probe_video(source: VideoSource) -> VideoInfo:
    try:
        return probe(source.uri)
    except (SourceError, DecodeError) as exc:
        raise VideoFailed(VideoResult.failed(source.video_id, source.uri, str(exc))) from None


@task(name="analyze-video", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE,
      retry_condition_fn=_retry_unless_bad_video, task_run_name="analyze {job.video_id}")
def analyze_video(job: VideoJob, pool) -> VideoResult:  # noqa: ANN001 - a WorkerPool; kept untyped for Prefect
    result = pool.process(job)
    if result.status != "ok":
        raise VideoFailed(result)
    return result


@flow(name="analyze", task_runner=ThreadPoolTaskRunner(max_workers=_MAX_IN_FLIGHT))
def analyze(sources: list[str], lake: str, config: dict | None = None, show_progress: bool = True) -> RunSummary:
    """Analyse every video under ``sources`` into ``lake``; returns the run's summary."""
    from prefect.runtime import flow_run

    from workers.pool import WorkerPool, ray_session

    started_at = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    logger = get_run_logger()
    cfg = RunConfig.from_mapping(config or {})
    plan = plan_run(sources, lake, cfg)
    found, detector, actions, config_hash = plan.sources, plan.detector, plan.actions, plan.config_hash
    run_id = str(flow_run.id or uuid.uuid4())
    summary = RunSummary(run_id=run_id, lake=lake, config_hash=config_hash)
    logger.info("found %d video(s); config %s", len(found), config_hash)

    results: list[VideoResult] = []
    with ray_session(cfg.ray_address):
        pool = WorkerPool(cfg, detector, actions)
        try:
            summary.workers = pool.plan.workers
            pool.wait_ready()  # a detector or action model that cannot load stops the run here
            with RunProgress(len(found), cfg.analysis_fps, enabled=show_progress) as progress:
                results = _fan_out(found, pool, lake, run_id, config_hash, progress)
        finally:
            pool.shutdown()

    for result in results:
        write_table(table_path(lake, "videos", result.video_id, config_hash), "videos", [result.to_row(run_id)])
        if result.status == "ok":
            summary.videos_ok += 1
            summary.frames_analyzed += result.frames_analyzed
            summary.n_detections += result.n_detections
            summary.n_tracks += result.n_tracks
            summary.clips_by_action = dict(Counter(summary.clips_by_action) + Counter(result.clips_by_action))
        else:
            summary.videos_failed += 1
            summary.failures.append((result.uri, result.error or "unknown error"))
    summary.wall_s = time.perf_counter() - t0
    write_table(table_path(lake, "runs", run_id), "runs", [{
        "run_id": run_id, "started_at": started_at, "finished_at": datetime.now(timezone.utc),
        "config": json.dumps(cfg.to_dict(), sort_keys=True), "config_hash": config_hash,
        "detector": detector.name, "detector_sha256": detector.sha256,
        "action_model": actions.name, "action_model_sha256": actions.sha256,
        "action_classes": list(action_classes(actions.path)),
        "videos_ok": summary.videos_ok, "videos_failed": summary.videos_failed,
        "frames_analyzed": summary.frames_analyzed, "wall_s": summary.wall_s,
    }])
    for line in summary.lines():
        logger.info(line)
    return summary


def _fan_out(found: list[VideoSource], pool, lake: str, run_id: str, config_hash: str,  # noqa: ANN001
             progress: RunProgress) -> list[VideoResult]:
    """Probe then analyse each video, keeping a bounded window of task runs in flight."""
    window = min(_MAX_IN_FLIGHT, 2 * pool.plan.workers + 2)
    waiting = deque(found)
    probing: list[tuple[VideoSource, PrefectFuture]] = []
    analysing: list[tuple[VideoSource, VideoInfo, PrefectFuture]] = []
    results: list[VideoResult] = []
    while waiting or probing or analysing:
        while waiting and len(probing) + len(analysing) < window:
            source = waiting.popleft()
            probing.append((source, probe_video.submit(source)))
        still_probing = []
        for source, future in probing:
            if not future.state.is_final():
                still_probing.append((source, future))
                continue
            outcome = future.result(raise_on_failure=False)
            if isinstance(outcome, VideoInfo):
                progress.expect(outcome)
                job = VideoJob(source.video_id, outcome, lake, run_id, config_hash)
                analysing.append((source, outcome, analyze_video.submit(job, pool)))
            else:
                results.append(_result_of(outcome, source))
        still_analysing = []
        for source, info, future in analysing:
            if not future.state.is_final():
                still_analysing.append((source, info, future))
                continue
            outcome = future.result(raise_on_failure=False)
            results.append(outcome if isinstance(outcome, VideoResult) else _result_of(outcome, source, info))
        changed = len(still_probing) != len(probing) or len(still_analysing) != len(analysing)
        probing, analysing = still_probing, still_analysing
        progress.update(videos_done=len(results), frames_done=pool.frames_done())
        if not changed:
            time.sleep(0.25)
    return results


def _result_of(outcome: object, source: VideoSource, info: VideoInfo | None = None) -> VideoResult:
    if isinstance(outcome, VideoFailed):
        return outcome.result
    message = f"{type(outcome).__name__}: {outcome}" if isinstance(outcome, BaseException) else f"unexpected outcome {outcome!r}"
    return VideoResult.failed(source.video_id, source.uri, message, info)
