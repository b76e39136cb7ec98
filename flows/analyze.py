"""The ``analyze`` flow: discover → skip what the lake has → probe → shard → Ray actors → stitch → run record.

Each video's probe and each shard are Prefect task runs with their own state. A shard whose
video is bad ends Failed with the reason and is not retried; a shard whose worker died is
retried (``retries=2``). Work already committed in the lake's ledger is never redone, so a
rerun after a crash (or a scheduled rerun) processes only what is missing.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from videolake.flows.progress import RunProgress
from videolake.flows.server import prefect_api_in_background
from videolake.pipeline.analyze import ShardJob, ShardResult, error_kind
from videolake.pipeline.compact import compact, small_file_count
from videolake.pipeline.config import RunConfig
from videolake.pipeline.decode import VideoInfo
from videolake.pipeline.errors import StorageError, TimedOut, VideolakeError
from videolake.pipeline.lake import Lake
from videolake.pipeline.plan import RunPlan, plan_run
from videolake.pipeline.runs import RunSummary, triage, write_run_record
from videolake.pipeline.scratch import sweep_leftovers
from videolake.pipeline.shards import Shard, plan_shards
from videolake.pipeline.sources import VideoSource
from videolake.pipeline.storage import redact, redact_logs
from videolake.pipeline.stitch import finalize_video

__all__ = ["analyze", "run_analysis", "RunSummary", "BadVideo"]

# Task runs in flight at once: enough to keep every actor busy, bounded for huge listings.
_MAX_IN_FLIGHT = 64
# Compact at the end of a run once this many small data files have piled up.
_COMPACT_AT_SMALL_FILES = 64


class BadVideo(Exception):
    """Raised by a task so Prefect marks it Failed without retrying: the input is at fault."""

    def __init__(self, kind: str, message: str, result: ShardResult | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.result = result


# A probe or shard past its time limit is tried once more; a second time, the video is quarantined.
_TIMEOUT_ATTEMPTS = 2


def _retry_unless_bad_video(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's callback signature
    if isinstance(state.data, TimedOut):
        return task_run.run_count < _TIMEOUT_ATTEMPTS
    return not isinstance(state.data, BadVideo)


@task(name="probe", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE,
      retry_condition_fn=_retry_unless_bad_video, task_run_name="probe {source.video_id}")
def probe_video(source: VideoSource, max_pixels: int, max_duration_s: float, timeout_s: float) -> VideoInfo:
    from videolake.workers.probe import probe_in_worker

    try:  # in a Ray worker: the driver never demuxes a video, and a stuck probe is ended
        return probe_in_worker(source.uri, max_pixels, max_duration_s, timeout_s)
    except (StorageError, TimedOut):
        raise  # the bucket failed for now, or the probe ran too long: Prefect retries the task
    except VideolakeError as exc:
        raise BadVideo(error_kind(exc), redact(str(exc))) from None


@task(name="analyze-shard", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE,
      retry_condition_fn=_retry_unless_bad_video, task_run_name="analyze {job.video_id} {job.shard.index}")
def analyze_shard(job: ShardJob, pool, timeout_s: float) -> ShardResult:  # noqa: ANN001 - a WorkerPool
    from prefect.runtime import task_run

    result = pool.process(job, timeout_s=timeout_s)  # a ShardTimeout is retried once (_retry_unless_bad_video)
    if result.status != "ok":
        raise BadVideo(result.error_kind or "internal", result.error or "failed", result)
    result.attempts = task_run.run_count
    return result


@dataclass
class _Video:
    source: VideoSource
    info: VideoInfo | None = None
    shards: list[Shard] = field(default_factory=list)
    running: dict[int, tuple[ShardJob, PrefectFuture]] = field(default_factory=dict)
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)


@flow(name="analyze", task_runner=ThreadPoolTaskRunner(max_workers=_MAX_IN_FLIGHT))
def analyze(
    sources: list[str], lake: str, config: dict | None = None, show_progress: bool = True, retry_failed: bool = False,
) -> RunSummary:
    """Analyse every new or changed video under ``sources`` into ``lake``; returns the run's summary."""
    from prefect.runtime import flow_run

    started_at = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    redact_logs("prefect.flow_runs", "prefect.task_runs")  # task failures are logged with their tracebacks
    logger = get_run_logger()
    cfg = RunConfig.from_mapping(config or {})
    plan = plan_run(sources, lake, cfg)
    lake = plan.lake
    sweep_leftovers(lake.url)  # what killed runs left: half-written files, Ray session folders, server logs
    run_id = str(flow_run.id or uuid.uuid4())
    state = lake.state(plan.config_hash, plan.sources)
    work = triage(plan.sources, state, retry_failed)
    todo = work.todo
    summary = RunSummary.start(run_id, plan, work)
    logger.info("%d video(s): %d to analyse, %d already done, %d quarantined", len(plan.sources), len(todo),
                summary.videos_done_before, summary.videos_quarantined)
    if todo:
        from videolake.workers.pool import WorkerPool, ray_session

        with ray_session(cfg.ray_address):
            pool = WorkerPool.claim(cfg, plan.detector, plan.actions)  # the one `videolake run` started ahead, if any
            try:
                summary.workers = pool.plan.workers
                with RunProgress(len(todo), cfg.analysis_fps, enabled=show_progress) as progress:
                    _fan_out(todo, pool, cfg, plan.config_hash, lake, run_id, state, summary, progress)
            finally:
                pool.shutdown()
    if todo and small_file_count(lake) >= _COMPACT_AT_SMALL_FILES:
        report = compact(lake)
        logger.info(report.line())
    summary.wall_s = time.perf_counter() - t0
    write_run_record(plan, summary, started_at)
    for line in summary.lines():
        logger.info(line)
    return summary


def run_analysis(plan: RunPlan, sources: list[str], show_progress: bool = True, retry_failed: bool = False) -> RunSummary:
    """``videolake run`` with work to do: a temporary Prefect server (where no ``PREFECT_API_URL``
    names a server), Ray and the workers' models all start at once, then the flow runs on them.

    Started one after the other they cost about 30 s on 2 cores before the first frame.
    """
    from videolake.workers.pool import WorkerPool, ray_session

    cfg = plan.config
    with prefect_api_in_background() as wait_for_api, ray_session(cfg.ray_address):
        WorkerPool.prestart(cfg, plan.detector, plan.actions)
        try:
            wait_for_api()
            return analyze(sources=sources, lake=plan.lake.url, config=cfg.to_dict(), show_progress=show_progress,
                           retry_failed=retry_failed)
        finally:
            WorkerPool.discard_prestarted()


def _fan_out(todo: list[VideoSource], pool, cfg: RunConfig, config_hash: str, lake: Lake, run_id: str,  # noqa: ANN001
             state, summary: RunSummary, progress: RunProgress) -> None:  # noqa: ANN001 - LakeState
    """Probe, shard and analyse, keeping a bounded window of task runs in flight."""
    waiting = deque(todo)
    probing: list[tuple[_Video, PrefectFuture]] = []
    ready: deque[tuple[_Video, ShardJob]] = deque()
    active: list[_Video] = []
    pool_ready = False  # probes start while the actors load their models
    while waiting or probing or ready or active:
        window = min(_MAX_IN_FLIGHT, pool.max_in_flight)  # a bounded number per actor; grows with the pool
        in_flight = len(probing) + sum(len(v.running) for v in active)
        while in_flight < window and (ready or waiting):
            if ready:
                if not pool_ready:
                    pool.wait_ready()  # a detector or action model that cannot load stops the run here
                    pool_ready = True
                video, job = ready.popleft()
                video.running[job.shard.index] = (job, analyze_shard.submit(job, pool, cfg.shard_timeout_s))
            else:
                video = _Video(waiting.popleft())
                probing.append((video, probe_video.submit(video.source, cfg.max_pixels, cfg.max_duration_s,
                                                          cfg.probe_timeout_s)))
            in_flight += 1
        changed = False
        for video, future in list(probing):
            if not future.wrapped_future.done():  # the thread pool's own future: no API call
                continue
            changed = True
            probing.remove((video, future))
            outcome = future.result(raise_on_failure=False)
            if not isinstance(outcome, VideoInfo):
                kind, message = _failure(outcome, "internal", repr)
                video.info = VideoInfo(video.source.uri, None, None, 0, 0, "unknown", None)
                video.failures[0] = (kind, message)
                summary.add(finalize_video(lake, config_hash, run_id, video.source, video.info, [], video.failures,
                                           time.perf_counter() - video.started, time_pattern=cfg.time_pattern))
                progress.update(videos_done=summary.videos_ok + summary.videos_failed, frames_done=pool.frames_done())
                continue
            video.info = outcome
            video.shards = plan_shards(outcome, cfg.shard_seconds, cfg.clip_seconds)
            summary.shards_total += len(video.shards)
            progress.expect(outcome)
            for shard in video.shards:
                if state.shard_committed(video.source, shard.key()):
                    summary.shards_done_before += 1
                    video.records.append(_record(video, shard, "done_before", run_id))
                else:
                    ready.append((video, ShardJob(video.source.video_id, video.source.content_key, outcome.without_keyframes(),
                                                  shard, lake.url, run_id, config_hash)))
            active.append(video)
        for video in list(active):
            for index, (job, future) in list(video.running.items()):
                if not future.wrapped_future.done():  # the thread pool's own future: no API call
                    continue
                changed = True
                del video.running[index]
                outcome = future.result(raise_on_failure=False)
                shard = job.shard
                if isinstance(outcome, ShardResult):
                    summary.shards_processed += 1
                    summary.features = outcome.features or summary.features
                    video.records.append(_record(video, shard, "ok", run_id, outcome))
                else:
                    kind, message = _failure(outcome, "worker", str)
                    summary.shards_failed += 1
                    video.failures[index] = (kind, message)
                    video.records.append(_record(video, shard, "failed", run_id, getattr(outcome, "result", None),
                                                 error=message, attempts=_attempts(outcome)))
            queued = any(v is video for v, _ in ready)
            if not video.running and not queued:
                active.remove(video)
                summary.add(finalize_video(lake, config_hash, run_id, video.source, video.info, video.shards, video.failures,
                                           time.perf_counter() - video.started, video.records, cfg.time_pattern))
        progress.update(videos_done=summary.videos_ok + summary.videos_failed, frames_done=pool.frames_done())
        if not changed:
            time.sleep(0.25)


def _failure(outcome: BaseException, kind: str, describe) -> tuple[str, str]:  # noqa: ANN001 - str or repr
    """(error kind, redacted message) of a task that failed for good; ``kind`` when no other is known."""
    if isinstance(outcome, BadVideo):
        return outcome.kind, str(outcome)
    if isinstance(outcome, TimedOut):
        return "timeout", redact(f"{outcome} ({_TIMEOUT_ATTEMPTS} attempts)")
    return kind, redact(describe(outcome))


def _attempts(outcome: BaseException) -> int:
    if isinstance(outcome, BadVideo):
        return 1
    return _TIMEOUT_ATTEMPTS if isinstance(outcome, TimedOut) else analyze_shard.retries + 1


def _record(video: _Video, shard: Shard, status: str, run_id: str, result: ShardResult | None = None,
            error: str | None = None, attempts: int | None = None) -> dict:
    """One row of the ``shards`` table."""
    if attempts is None:
        attempts = result.attempts if result else (0 if status == "done_before" else 1)
    return {
        "video_id": video.source.video_id, "content_key": video.source.content_key, "shard_index": shard.index,
        "t_start_s": shard.t_start_s, "t_end_s": None if shard.t_end_s == float("inf") else shard.t_end_s,
        "status": status, "attempts": attempts,
        "worker": result.worker if result else None, "node_id": result.node_id if result else None,
        "node_ip": result.node_ip if result else None, "gpu_ids": result.gpu_ids if result else None,
        "frames_analyzed": result.frames_analyzed if result else None,
        "wall_s": result.wall_s if result else None, "error": error, "run_id": run_id,
    }
