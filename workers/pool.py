"""Starting or joining Ray, sizing the actor pool from the cluster and the backlog, handing calls to ready actors.

``plan_workers`` (``workers/plan.py``) says what each actor reserves and how many the alive nodes
hold. ``WorkerPool.submit_*`` returns a ``concurrent.futures.Future`` at once; the call waits in
the pool until an actor is ready and has a free slot (one call at a time on the CPU, ``--decoders``
on CUDA), then runs there. One
thread per pool turns Ray's completions into those futures: it admits actors once their models
loaded, takes back actors that Ray restarts (a crash, a lost node), stops calls past their time
limit, and follows the backlog: ``scale_to`` asks for actors up to ``--max-workers`` (the
autoscaler adds nodes for them, through ``ray.autoscaler.sdk.request_resources``) and lets idle
ones go when the work left no longer needs them, so the autoscaler can remove their nodes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import ray
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError, WorkerCrashedError

from videolake.pipeline.analyze import ShardJob, ShardResult
from videolake.pipeline.commit import VideoCommit
from videolake.pipeline.config import RunConfig
from videolake.pipeline.decode import VideoInfo
from videolake.pipeline.errors import ModelError, ShardTimeout, TimedOut, VideolakeError, WorkerLost
from videolake.pipeline.models import ModelInfo
from videolake.pipeline.stitch import VideoOutcome
from videolake.pipeline.storage import forwarded_env
from videolake.workers.actor import ProgressCounter, VideoToFinalize, VideoWorker
from videolake.workers.local_ray import start_local_ray, stop_local_ray
from videolake.workers.plan import NodeResources, WorkerPlan, actor_resources, bundle, fits, needs, plan_workers

__all__ = ["WorkerPool", "ray_session", "plan_workers", "WorkerPlan",
           "NodeResources", "cluster_nodes", "actor_resources", "joined_cluster"]

log = logging.getLogger(__name__)

_LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024
_CALLS_WAITING_PER_WORKER = 1  # what the flow keeps submitted: a call per slot of each actor, and one waiting here
_GROW_CHECK_S = 10.0
_TICK_S = 1.0  # time limits and cluster growth are checked this often
_WAITING_NOTE_S = 60.0  # while no worker is ready, say why this often
_HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray gives the head node this resource
_LOST = (RayActorError, ActorUnavailableError, WorkerCrashedError)


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[str]:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start a local Ray on loopback for the block."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        yield "existing"
        return
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    else:
        start_local_ray(  # a Ray of its own on loopback, even where `ray start` left a cluster (or a stale address) behind
            num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
            object_store_memory=_LOCAL_OBJECT_STORE_BYTES, logging_level=logging.ERROR,
        )
    try:
        yield address or "local"
    finally:
        if address:
            ray.shutdown()
        else:
            stop_local_ray()


def joined_cluster(config: RunConfig) -> bool:
    """Whether the run joins a cluster by address (which may autoscale), not a Ray of its own."""
    return bool(config.ray_address or os.environ.get("RAY_ADDRESS"))


def cluster_nodes() -> list[NodeResources]:
    """The alive nodes of the connected Ray cluster and their CPUs and GPUs."""
    return [NodeResources(n["NodeID"], float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
            for n in ray.nodes() if n.get("Alive")]


def _cause(exc: BaseException) -> BaseException | None:
    """The ``VideolakeError`` behind a Ray error from an actor's constructor, if any."""
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, VideolakeError):
        return exc.cause
    if isinstance(exc, RayActorError) and exc.actor_init_failed:
        return ModelError(f"a worker could not start: {str(exc).splitlines()[-1]}")
    return None


@dataclass(eq=False)
class _Call:
    """One call of an actor method, from submission until its future is set."""

    method: str
    args: tuple
    future: Future
    timeout_s: float | None = None
    what: str = ""
    actor: Any = None  # the _Actor it runs on, once dispatched
    deadline: float | None = None
    timed_out: bool = False


@dataclass(eq=False)
class _Actor:
    handle: Any
    slots: int  # calls it runs at once
    described: dict | None = None  # its describe() answer once ready
    calls: list[_Call] = field(default_factory=list)  # what it runs now
    ask_at: float | None = None  # when to ask a restarting actor again who it is
    started_at: float = field(default_factory=time.monotonic)


class WorkerPool:
    """``VideoWorker`` actors sized to the cluster and the backlog; calls return futures.

    ``prestart`` starts a pool ahead of the flow that will use it (its actors load their models
    meanwhile); the flow's ``claim`` with the same settings takes it over, or starts a new one.
    While no actor is ready the pool says why, on its logger (stderr where nothing else is set up)
    and to ``notify`` if given (the flow's run logger): at once when no node can hold an actor
    (the autoscaler must add one), then every minute.
    """

    _prestarted: dict[tuple, WorkerPool] = {}

    def __init__(self, config: RunConfig, detector: ModelInfo, actions: ModelInfo,
                 notify: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.notify = notify
        self.autoscaling = joined_cluster(config)
        self.plan = plan_workers(config, cluster_nodes(), self.autoscaling)
        self._settings = {**config.to_dict(), "device": self.plan.device}
        self._models = (detector.path, actions.path)
        self._progress_name = f"videolake-progress-{uuid.uuid4().hex}"
        # On the head node: a lost worker node must not take the progress counter with it.
        self.progress = ProgressCounter.options(name=self._progress_name,
                                                resources={_HEAD_NODE_RESOURCE: 0.001}).remote()
        self._actors: list[_Actor] = []
        self._pending: deque[_Call] = deque()  # submitted, waiting for a free actor
        self._events: queue.Queue = queue.Queue()  # (kind, actor, call, Ray future) from Ray's callbacks
        self._fatal: BaseException | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._backlog: int | None = None  # calls of work left, once the flow says
        self._releasing = True  # whether actors beyond the backlog may go
        self._target = 0  # actors wanted now
        self._requested = 0  # actors' worth of resources asked of the autoscaler
        self._wake_at = 0.0  # when the pool's thread looks at the time limits next
        self.most_workers = 0
        with self._lock:
            self._resize()
        self._request_resources()
        if not any(fits(self.plan, node) for node in cluster_nodes()):
            self._say(f"no node of the Ray cluster can hold a worker now (each needs {needs(self.plan)}): "
                      + ("waiting for the autoscaler to add nodes" if self.autoscaling else "waiting for nodes to join"))
        self._thread = threading.Thread(target=self._run, name="videolake-pool", daemon=True)
        self._thread.start()

    @staticmethod
    def _key(config: RunConfig, detector: ModelInfo, actions: ModelInfo) -> tuple:
        return json.dumps(config.to_dict(), sort_keys=True, default=str), detector.path, actions.path

    @classmethod
    def prestart(cls, config: RunConfig, detector: ModelInfo, actions: ModelInfo) -> WorkerPool:
        pool = cls(config, detector, actions)
        cls._prestarted[cls._key(config, detector, actions)] = pool
        return pool

    @classmethod
    def claim(cls, config: RunConfig, detector: ModelInfo, actions: ModelInfo,
              notify: Callable[[str], None] | None = None) -> WorkerPool:
        """The pool prestarted with these settings in this Ray session, or a new one."""
        pool = cls._prestarted.pop(cls._key(config, detector, actions), None)
        if pool is None or not ray.is_initialized():
            return cls(config, detector, actions, notify)
        pool.notify = notify
        return pool

    @classmethod
    def discard_prestarted(cls) -> None:
        """Shut down the prestarted pools nobody claimed (the flow failed before it started)."""
        while cls._prestarted:
            cls._prestarted.popitem()[1].shutdown()

    # What the flow calls.

    @property
    def actors(self) -> list:
        """The ``VideoWorker`` handles, placed or waiting for a node."""
        with self._lock:
            return [a.handle for a in self._actors]

    @property
    def max_in_flight(self) -> int:
        """Calls the flow may have submitted at once: a fixed number per actor, plus room for probes."""
        with self._lock:
            return sum(a.slots + _CALLS_WAITING_PER_WORKER for a in self._actors) + 2

    def submit_shard(self, job: ShardJob, timeout_s: float | None = None) -> Future[ShardResult]:
        """Analyse one shard; the future fails with ``WorkerLost``, ``ShardTimeout`` or the worker's error."""
        return self._submit("process", (job,), timeout_s, f"shard {job.shard.index} of {job.info.uri}")

    def submit_probe(self, uri: str, max_pixels: int, max_duration_s: float,
                     timeout_s: float | None = None) -> Future[VideoInfo]:
        """Probe one video on a worker (it reads the video's packets, so not in the driver); the
        future fails with ``TimedOut`` past ``timeout_s``, ``WorkerLost`` or the probe's own error."""
        return self._submit("probe", (uri, max_pixels, max_duration_s), timeout_s, f"probing {uri}")

    def submit_finalize(self, video: VideoToFinalize) -> Future[tuple[VideoOutcome, VideoCommit | None]]:
        """Stitch a finished video's tracks, on a worker: its summary line and the commit that publishes it."""
        return self._submit("finalize", (video,), None, f"finalizing {video.info.uri}")

    def submit_publish(self, lake: str, commits: list[VideoCommit]) -> Future[None]:
        """Publish finished videos into the lake, on a worker, one Delta transaction per table for all."""
        return self._submit("publish", (lake, commits), None, f"publishing {len(commits)} video(s)")

    def scale_to(self, backlog: int, release: bool = True) -> None:
        """The work left is about ``backlog`` calls: ask for actors up to ``--max-workers`` (or
        ``--workers``, or what the cluster holds); with ``release``, let idle ones go beyond that."""
        with self._lock:
            self._backlog, self._releasing = backlog, release
            self._resize()
        self._request_resources()

    def wait_ready(self, timeout_s: float | None = None) -> list[dict]:
        """Block until at least one actor loaded its models; a model that cannot load raises here."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._changed:
            while not self._ready() and self._fatal is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise WorkerLost(f"no worker became ready within {timeout_s:.0f} s")
                self._changed.wait(timeout=left if left is not None else 1.0)
            if self._fatal is not None:
                raise self._fatal
            return [a.described for a in self._ready()]

    def ready(self) -> list[dict]:
        """What the actors taking calls now report: worker name, node, GPUs, device."""
        with self._lock:
            return [a.described for a in self._ready()]

    def frames_done(self) -> int:
        return ray.get(self.progress.frames.remote())

    def shutdown(self) -> None:
        self._stop.set()
        self._events.put(("stop", None, None, None))
        self._thread.join(timeout=5)
        with self._lock:
            handles = [a.handle for a in self._actors]
            self._actors.clear()
            self._fail_pending(WorkerLost("the pool was shut down"))
        for handle in handles:
            with contextlib.suppress(Exception):
                ray.kill(handle)
        with contextlib.suppress(Exception):
            ray.kill(self.progress)
        if self._requested:
            self._target = 0
            self._request_resources()

    # The pool's thread: Ray's completions in, futures out.

    def _submit(self, method: str, args: tuple, timeout_s: float | None, what: str) -> Future:
        call = _Call(method, args, Future(), timeout_s, what)
        with self._lock:
            if self._fatal is not None:
                call.future.set_exception(self._fatal)
                return call.future
            self._pending.append(call)
            self._dispatch()
        return call.future

    def _run(self) -> None:
        next_grow = time.monotonic() + _GROW_CHECK_S
        next_note = time.monotonic() + _WAITING_NOTE_S
        while not self._stop.is_set():
            try:
                kind, actor, call, done = self._events.get(timeout=self._until_next_deadline())
            except queue.Empty:
                kind = "tick"
            if kind == "done":
                self._finished(actor, call, done)
            elif kind == "described":
                self._described(actor, done)
            now = time.monotonic()
            self._stop_overdue(now)
            self._ask_again(now)
            if now >= next_grow:
                next_grow = now + _GROW_CHECK_S
                with contextlib.suppress(Exception):  # a cluster that cannot answer now is asked again later
                    self._grow()
            if now >= next_note:
                next_note = now + _WAITING_NOTE_S
                self._note_waiting()

    def _dispatch(self) -> None:
        """Hand waiting calls to free ready actors (under the lock)."""
        free = [a for a in self._ready() for _ in range(a.slots - len(a.calls))]  # one entry per free slot
        free.sort(key=lambda a: len(a.calls))  # the emptiest actors first, so calls spread over them
        while self._pending and free:
            actor, call = free.pop(0), self._pending.popleft()
            actor.calls.append(call)
            call.actor = actor
            if call.timeout_s is not None:
                call.deadline = time.monotonic() + call.timeout_s
                if call.deadline < self._wake_at:  # sooner than the pool's thread looks again: wake it
                    self._events.put(("deadline", None, None, None))
            done = getattr(actor.handle, call.method).remote(*call.args).future()
            done.add_done_callback(lambda f, a=actor, c=call: self._events.put(("done", a, c, f)))

    def _finished(self, actor: _Actor, call: _Call, done: Future) -> None:
        """A call came back: its future gets the result or the error; its actor takes the next call."""
        exc = done.exception()
        with self._lock:
            if call in actor.calls:
                actor.calls.remove(call)
            if exc is not None and call.timed_out:
                timed_out = ShardTimeout if call.method == "process" else TimedOut
                exc = timed_out(f"{call.what} ran past the {call.timeout_s:g} s limit")
            elif isinstance(exc, _LOST):
                self._describe(actor)  # Ray restarts it (elsewhere if its node is gone); it rejoins once ready
                exc = WorkerLost(f"worker died while {call.what}: {type(exc).__name__}")
            elif isinstance(exc, RayTaskError):  # the method raised: its own error, without Ray's wrapper
                exc = exc.cause if isinstance(exc.cause, Exception) else exc
            self._dispatch()
        if exc is None:
            call.future.set_result(done.result())
        else:
            call.future.set_exception(exc)

    def _until_next_deadline(self) -> float:
        """How long the pool's thread may wait for Ray: until the next time limit, at most ``_TICK_S``."""
        with self._lock:
            now = time.monotonic()
            deadlines = [c.deadline for a in self._actors for c in a.calls if c.deadline and not c.timed_out]
            wait_s = max(0.0, min([_TICK_S, *(d - now for d in deadlines)]))
            self._wake_at = now + wait_s  # a call dispatched with a sooner deadline wakes the thread (_dispatch)
        return wait_s

    def _stop_overdue(self, now: float) -> None:
        with self._lock:
            late = [c for a in self._actors for c in a.calls if c.deadline and now > c.deadline and not c.timed_out]
            for call in late:
                call.timed_out = True  # its actor's other calls fail as lost workers, and are sent again
            overdue = list({id(c.actor): c.actor for c in late}.values())
            for actor in overdue:
                actor.described = None  # takes no call until Ray restarted it
        for actor in overdue:
            ray.kill(actor.handle, no_restart=False)  # stops the runaway call; Ray restarts the actor
            with self._lock:
                self._describe(actor)

    def _describe(self, actor: _Actor) -> None:
        """Ask the actor who it is (under the lock); it takes calls once it answers (its models loaded)."""
        actor.described, actor.ask_at = None, None
        done = actor.handle.describe.remote().future()
        done.add_done_callback(lambda f, a=actor: self._events.put(("described", a, None, f)))

    def _ask_again(self, now: float) -> None:
        with self._lock:
            for actor in self._actors:
                if actor.ask_at is not None and now >= actor.ask_at:
                    self._describe(actor)

    def _described(self, actor: _Actor, done: Future) -> None:
        exc = done.exception()
        with self._changed:
            if actor not in self._actors:
                return  # released meanwhile
            if exc is None:
                actor.described = done.result()
                if len(self._ready()) == 1 and time.monotonic() - actor.started_at > _WAITING_NOTE_S / 4:
                    self._say(f"a worker is ready on node {actor.described['node_id'][:8]}; the run goes on")
                self._dispatch()
            elif (fatal := _cause(exc)) is not None:
                self._fatal = fatal
                self._fail_pending(fatal)
            else:  # Ray is restarting it (a crash, a lost node): ask again shortly
                actor.ask_at = time.monotonic() + 0.5
            self._changed.notify_all()

    def _fail_pending(self, exc: BaseException) -> None:
        while self._pending:
            self._pending.popleft().future.set_exception(exc)

    def _ready(self) -> list[_Actor]:
        return [a for a in self._actors if a.described is not None]

    def _add_actors(self, count: int, plan: WorkerPlan) -> None:
        """Start ``count`` actors (under the lock); those that do not fit yet wait for nodes."""
        for _ in range(count):
            handle = VideoWorker.options(**actor_resources(plan)).remote(
                self._settings, *self._models, plan.threads, self._progress_name, storage_env=forwarded_env())
            actor = _Actor(handle, plan.slots)
            self._actors.append(actor)
            self._describe(actor)

    def _release(self, count: int) -> None:
        """Stop up to ``count`` actors that run nothing, those still waiting for a node first (under the lock)."""
        idle = sorted((a for a in self._actors if not a.calls), key=lambda a: a.described is not None)
        for actor in idle[:count]:
            self._actors.remove(actor)
            with contextlib.suppress(Exception):
                ray.kill(actor.handle)

    def _request_resources(self) -> None:
        """Tell the autoscaler how many actors' worth of resources the run needs now (joined clusters only)."""
        if not self.autoscaling or self._target == self._requested:
            return
        from ray.autoscaler.sdk import request_resources

        with contextlib.suppress(Exception):  # a hint: a cluster without an autoscaler ignores it
            request_resources(bundles=[bundle(self.plan)] * self._target)
            self._requested = self._target

    def _resize(self) -> None:
        """Start or stop actors to reach the target (under the lock)."""
        limit = self.config.workers or self.config.max_workers or self.plan.workers
        wanted = min(limit, self.plan.workers) if self._backlog is None else self._backlog  # unknown: what fits now
        self._target = max(1, min(limit, wanted))
        missing = self._target - len(self._actors)
        if missing > 0:
            self._add_actors(missing, self.plan)
        elif missing < 0 and self._releasing:
            self._release(-missing)
        self.most_workers = max(self.most_workers, len(self._actors))

    def _grow(self) -> None:
        """Follow nodes that joined (unless ``--workers`` or ``--max-workers`` fixes the size)."""
        if self.config.workers or self.config.max_workers:
            return
        plan = plan_workers(self.config, cluster_nodes(), self.autoscaling)
        if plan.device != self.plan.device or plan.workers <= self.plan.workers:
            return
        with self._lock:
            self.plan = plan
            self._resize()

    def _note_waiting(self) -> None:
        with self._lock:
            if self._ready() or not self._actors:
                return
            waiting = len(self._actors)
        nodes = cluster_nodes()
        self._say(f"still waiting for Ray to place workers: 0 of {waiting} ready, each needs {needs(self.plan)}; "
                  f"the cluster has {len(nodes)} node(s) with {sum(n.cpus for n in nodes):g} CPU and "
                  f"{sum(n.gpus for n in nodes):g} GPU")

    def _say(self, line: str) -> None:
        log.warning(line)
        if self.notify is not None:
            self.notify(line)

