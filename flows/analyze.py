"""The ``analyze`` flow: discover → skip what the lake has → probe → shard → Ray actors → stitch → run record.

The flow run is the unit Prefect sees: its logs, a progress artifact, the summary's table artifacts,
an event per falling or lying episode (``flows/outputs.py``), its final state. The work
inside it is calls of the Ray actors (a probe per video, a call per shard, a finalize per video that
stitches its tracks, a publish per batch of up to 64 finished videos into the Delta tables),
each a future; ``_FanOut`` keeps a bounded window of them in flight and hands each finished one to a
small handler. Per-shard state lives in the lake's ``shards`` table, per-video state in ``videos``:
a Prefect task run per shard cost more than the shard itself at scale (see bench/SCALE.md). A call
whose worker died (or whose bucket failed for now) is sent again, up to 3 attempts; a probe or
shard past its time limit is tried once more, then quarantined; a video that is bad fails with the
reason and is not retried. Work already committed in the lake's ledger is never redone, so a rerun
after a crash (or a scheduled rerun) processes only what is missing.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Callable

from prefect import flow, get_run_logger

from videolake.flows.outputs import emit_episode_events, publish_summary
from videolake.flows.progress import RunProgress
from videolake.flows.server import prefect_api_in_background
from videolake.pipeline.analyze import ShardJob, ShardResult, error_kind
from videolake.pipeline.commit import VideoCommit
from videolake.pipeline.compact import compact, small_file_count
from videolake.pipeline.config import RunConfig
from videolake.pipeline.decode import VideoInfo
from videolake.pipeline.errors import ConfigError, DecodeError, ModelError, SourceError, TimedOut
from videolake.pipeline.lake import Lake
from videolake.pipeline.ledger import LakeState
from videolake.pipeline.plan import RunPlan, plan_run
from videolake.pipeline.runs import RunSummary, triage, write_run_record
from videolake.pipeline.scratch import sweep_leftovers
from videolake.pipeline.shards import Shard, plan_shards
from videolake.pipeline.sources import VideoSource
from videolake.pipeline.stitch import VideoOutcome
from videolake.pipeline.storage import redact, redact_logs, set_storage_options

__all__ = ["analyze", "run_analysis", "RunSummary"]

# Compact at the end of a run once this many small data files have piled up.
_COMPACT_AT_SMALL_FILES = 64
# A call whose worker died, or whose bucket failed for now, runs at most this often.
_ATTEMPTS = 3
# A probe or shard past its time limit runs at most this often; then the video is quarantined.
_TIMEOUT_ATTEMPTS = 2
# Finished videos are published together, one Delta transaction per table for up to this many
# (four per video cost more than the videos of a stub benchmark: bench/SCALE.md) ...
_PUBLISH_BATCH = 64
# ... and at least this often, or at once when nothing else is in flight.
_PUBLISH_EVERY_S = 10.0


def run_name() -> str:
    """The flow run's name in Prefect's UI: what it reads and where it writes, e.g. ``cams/ +2 → lake``."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    sources = [str(s) for s in parameters.get("sources") or []]
    first = _last_part(sources[0]) if sources else "nothing"
    more = f" +{len(sources) - 1}" if len(sources) > 1 else ""
    return redact(f"{first}{more} → {_last_part(str(parameters.get('lake', '')))}")


def _last_part(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1] or location


@flow(name="analyze", flow_run_name=run_name)
def analyze(
    sources: list[str], lake: str, config: RunConfig | None = None, show_progress: bool = True, retry_failed: bool = False,
    storage_block: str | None = None,
) -> RunSummary:
    """Analyse every new or changed video under ``sources`` into ``lake``; returns the run's summary.

    ``config`` takes ``RunConfig``'s fields (a mapping is validated into one by Prefect; none: the defaults).
    ``storage_block`` names a Prefect Secret block whose value is the buckets' storage options (a JSON
    object, as ``--storage-options`` takes): credentials live in the block, never in parameters.
    """
    from prefect.runtime import flow_run

    started_at = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    redact_logs("prefect.flow_runs")  # a failed run is logged with its traceback
    logger = get_run_logger()
    if storage_block:
        from prefect.blocks.system import Secret

        try:
            options = Secret.load(storage_block).get()
        except ValueError as exc:  # no such block
            raise ConfigError(f"storage_block {storage_block!r}: {exc}") from None
        set_storage_options(options)  # this process and, through forwarded_env, the workers
    cfg = config or RunConfig()
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
            # the one `videolake run` started ahead, if any
            pool = WorkerPool.claim(cfg, plan.detector, plan.actions, notify=logger.warning)
            try:
                with RunProgress(len(todo), cfg.analysis_fps, enabled=show_progress) as progress:
                    _FanOut(todo, pool, cfg, plan.config_hash, lake, run_id, state, summary, progress).run()
            finally:
                summary.workers = pool.most_workers
                pool.shutdown()
    if todo and small_file_count(lake) >= _COMPACT_AT_SMALL_FILES:
        report = compact(lake)
        logger.info(report.line())
    summary.wall_s = time.perf_counter() - t0
    write_run_record(plan, summary, started_at)
    for line in summary.lines():
        logger.info(line)
    try:
        publish_summary(summary)
    except Exception as exc:  # noqa: BLE001 - the lake has the run's rows; the artifact is a view of them
        logger.warning("could not publish the summary artifact: %s", redact(str(exc)))
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
            return analyze(sources=sources, lake=plan.lake.url, config=cfg, show_progress=show_progress,
                           retry_failed=retry_failed)
        finally:
            WorkerPool.discard_prestarted()


@dataclass(eq=False)
class _Video:
    """One video of the run, from its probe until its rows are written."""

    source: VideoSource
    started: float = field(default_factory=time.perf_counter)
    info: VideoInfo | None = None
    shards: list[Shard] = field(default_factory=list)
    left: int = 0  # shards sent and not back yet
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)  # shard index → (error kind, message)
    records: list[dict] = field(default_factory=list)  # its rows of the ``shards`` table
    results: dict[int, ShardResult] = field(default_factory=dict)  # of its shards this run committed, by index


def _fatal(exc: BaseException) -> bool:
    """Errors that stop the run: a model or setting no worker can start with."""
    return isinstance(exc, (ModelError, ConfigError))


def _worth_another_try(exc: BaseException, attempt: int) -> bool:
    """A lost worker, a bucket or lake failing for now, an unexpected error: not a video's own fault.
    A time limit reached may be a busy node: tried once more."""
    if isinstance(exc, TimedOut):
        return attempt < _TIMEOUT_ATTEMPTS
    return attempt < _ATTEMPTS and not isinstance(exc, (SourceError, DecodeError))


def _failure(exc: BaseException, attempts: int, kind: str) -> tuple[str, str]:
    """(error kind, redacted message) of a call that failed for good; ``kind`` when ``error_kind`` knows no other."""
    if isinstance(exc, TimedOut):
        return "timeout", redact(f"{exc} ({attempts} attempts)")
    known = error_kind(exc)
    return kind if known == "internal" else known, redact(str(exc) or repr(exc))


class _FanOut:
    """Probe, shard, analyse and finalize each video, with a bounded window of calls in flight.

    ``run`` waits for the first of the calls in flight to finish and hands it to its handler
    (``_probed``, ``_analysed``, ``_finalized``, ``_published``), which may send further calls; then it tops the
    window up, shards of videos already probed before new probes, so videos finish in order and
    the driver holds only the videos in flight.
    """

    def __init__(self, todo: list[VideoSource], pool, cfg: RunConfig, config_hash: str, lake: Lake,  # noqa: ANN001 - a WorkerPool
                 run_id: str, state: LakeState, summary: RunSummary, progress: RunProgress) -> None:
        self.pool, self.cfg, self.config_hash, self.lake, self.run_id = pool, cfg, config_hash, lake, run_id
        self.state, self.summary, self.progress = state, summary, progress
        self.waiting: deque[VideoSource] = deque(todo)  # not probed yet
        self.ready: deque[tuple[_Video, ShardJob, int]] = deque()  # shards to send, with their attempt number
        self.in_flight: dict[Future, Callable[[Future], None]] = {}
        self.probed = 0  # videos whose shards are known
        self.unpublished: list[tuple[VideoOutcome, VideoCommit]] = []  # stitched, waiting for ``_publish``
        self.unpublished_since = 0.0

    def run(self) -> None:
        self._top_up()
        while self.in_flight or self.unpublished:
            if self.in_flight:
                done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    self.in_flight.pop(future)(future)
            self._top_up()
            if self.unpublished and (not self.in_flight or len(self.unpublished) >= _PUBLISH_BATCH
                                     or time.perf_counter() - self.unpublished_since >= _PUBLISH_EVERY_S):
                self._publish(self.unpublished, attempt=1)
                self.unpublished = []
            self.progress.update(self.summary.videos_ok + self.summary.videos_failed, self._frames_done)

    def _frames_done(self) -> int:
        """Frames analysed so far: the workers' count (sent every half second), at least the finished shards'."""
        return max(self.pool.frames_done(), self.summary.frames_processed)

    def _top_up(self) -> None:
        window = self.pool.max_in_flight
        while len(self.in_flight) < window and (self.ready or self.waiting):
            if self.ready:
                self._analyse(*self.ready.popleft())
            else:
                self._probe(_Video(self.waiting.popleft()), attempt=1)
        # Actors for the work left (a video not probed yet counts as many shards as the probed ones so
        # far); idle actors go only once every video is probed, so none is let go and asked for again.
        per_video = self.summary.shards_total / max(1, self.probed)
        self.pool.scale_to(round(len(self.waiting) * max(1.0, per_video)) + len(self.ready) + len(self.in_flight),
                           release=not self.waiting)

    def _probe(self, video: _Video, attempt: int) -> None:
        future = self.pool.submit_probe(video.source.uri, self.cfg.max_pixels, self.cfg.max_duration_s,
                                        timeout_s=self.cfg.probe_timeout_s)
        self.in_flight[future] = partial(self._probed, video, attempt)

    def _probed(self, video: _Video, attempt: int, future: Future) -> None:
        exc = future.exception()
        if exc is not None:
            if _fatal(exc):
                raise exc
            if _worth_another_try(exc, attempt):
                self._probe(video, attempt + 1)
                return
            video.info = VideoInfo(video.source.uri, None, None, 0, 0, "unknown", None)
            video.failures[0] = _failure(exc, attempt, "internal")
            self._finalize(video, attempt=1)
            return
        info = video.info = future.result()
        self.probed += 1
        video.shards = plan_shards(info, self.cfg.shard_seconds, self.cfg.clip_seconds)
        self.summary.shards_total += len(video.shards)
        to_run = []
        for shard in video.shards:
            if self.state.shard_committed(video.source, shard.key()):
                self.summary.shards_done_before += 1
                video.records.append(_record(video, shard, "done_before", self.run_id))
            else:
                to_run.append(shard)
                self.ready.append((video, ShardJob(video.source.video_id, video.source.content_key,
                                                   info.without_keyframes(), shard, self.lake.url, self.run_id,
                                                   self.config_hash), 1))
        video.left = len(to_run)
        self.progress.expect(info, to_run)
        if not to_run:  # every shard committed by an earlier run: only the stitching is left
            self._finalize(video, attempt=1)

    def _analyse(self, video: _Video, job: ShardJob, attempt: int) -> None:
        future = self.pool.submit_shard(job, timeout_s=self.cfg.shard_timeout_s)
        self.in_flight[future] = partial(self._analysed, video, job, attempt)

    def _analysed(self, video: _Video, job: ShardJob, attempt: int, future: Future) -> None:
        exc, shard = future.exception(), job.shard
        if exc is not None and _fatal(exc):
            raise exc
        if exc is not None and _worth_another_try(exc, attempt):
            self.ready.appendleft((video, job, attempt + 1))
            return
        result: ShardResult | None = None if exc is not None else future.result()
        if result is not None and result.status == "ok":
            self.summary.add_shard(result)
            result.attempts = attempt
            video.records.append(_record(video, shard, "ok", self.run_id, result))
            video.results[shard.index] = result
        else:
            if result is not None:
                kind, message = result.error_kind or "internal", result.error or "failed"
            else:  # a worker lost on every attempt counts against the video, as a time limit reached twice
                kind, message = _failure(exc, attempt, "worker")
            self.summary.shards_failed += 1
            video.failures[shard.index] = (kind, message)
            video.records.append(_record(video, shard, "failed", self.run_id, result, error=message, attempts=attempt))
        video.left -= 1
        if video.left == 0:
            self._finalize(video, attempt=1)

    def _finalize(self, video: _Video, attempt: int) -> None:
        from videolake.workers.actor import VideoToFinalize

        future = self.pool.submit_finalize(VideoToFinalize(
            self.lake.url, self.config_hash, self.run_id, video.source, video.info, video.shards, video.failures,
            time.perf_counter() - video.started, video.records, self.cfg.time_pattern, video.results))
        self.in_flight[future] = partial(self._finalized, video, attempt)

    def _finalized(self, video: _Video, attempt: int, future: Future) -> None:
        exc = future.exception()
        if exc is not None:
            if _fatal(exc) or attempt >= _ATTEMPTS:
                raise exc  # the lake cannot take the video's rows: a rerun finishes it
            self._finalize(video, attempt + 1)
            return
        outcome, commit = future.result()
        if commit is None:  # another run published the video meanwhile
            self._done(outcome)
            return
        if not self.unpublished:
            self.unpublished_since = time.perf_counter()
        self.unpublished.append((outcome, commit))

    def _publish(self, videos: list[tuple[VideoOutcome, VideoCommit]], attempt: int) -> None:
        future = self.pool.submit_publish(self.lake.url, [commit for _, commit in videos])
        self.in_flight[future] = partial(self._published, videos, attempt)

    def _published(self, videos: list[tuple[VideoOutcome, VideoCommit]], attempt: int, future: Future) -> None:
        exc = future.exception()
        if exc is not None:
            if _fatal(exc) or attempt >= _ATTEMPTS:
                raise exc  # the lake cannot take the videos' rows: a rerun finishes them (their shards are committed)
            self._publish(videos, attempt + 1)
            return
        for outcome, _ in videos:
            self._done(outcome)

    def _done(self, outcome: VideoOutcome) -> None:
        """A video in the lake: counted, and its alert episodes sent as events."""
        self.summary.add(outcome)
        emit_episode_events(outcome.episodes, self.lake.url, self.run_id)


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
        "frames_detected": result.frames_detected if result else None,
        "wall_s": result.wall_s if result else None, "error": error, "run_id": run_id,
    }
