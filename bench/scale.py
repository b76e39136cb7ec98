"""Orchestration at scale: the real flow over a generated listing, with a model-free analyzer.

    python bench/scale.py --videos 10000 --shards-per-video 5 [--workers 2]

Runs ``flows.analyze.analyze`` on a real Prefect server (started here, its own database) and a real
local Ray (started here, its own temp dir), over ``--videos`` copies of one tiny real video of
``--shards-per-video`` 2-second shards, each made distinct by a trailing MP4 ``free`` box (the lake
knows a video by its content: identical copies would be one video). The Ray workers run ``StubAnalyzer`` (chosen through
``VIDEOLAKE_ANALYZER``): no models, each shard stages a one-row ``detections`` file, no clips (a
table without rows stages no file, as in a real shard) and its ``ledger`` row (``commit_shard``, as a
real shard), so everything but inference is the product's own path:
listing, triage, probing, sharding, the pool, the fan-out, stitching and publishing each video
(its Delta commits on a worker), the ``runs`` row and the compaction.

Prints the driver's CPU ms per shard, its peak RSS, shards/s end to end, Prefect API requests, events
and database growth per shard, and the CPU of the Prefect server and of Ray's processes per shard;
the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from videolake.flows.progress import expected_frames  # noqa: E402
from videolake.pipeline.analyze import ShardJob, ShardResult, commit_shard  # noqa: E402
from videolake.pipeline.config import RunConfig  # noqa: E402
from videolake.pipeline.lake import write_table  # noqa: E402
from videolake.pipeline.shards import SHARD_TRACK_STRIDE  # noqa: E402

SHARD_SECONDS = 2.0
VIDEO_FPS = 4


class StubAnalyzer:
    """The benchmark's analyzer: no model; one detection, no clip and the ledger row per shard (``VIDEOLAKE_ANALYZER``),
    staged through the same sinks and ``commit_shard`` as a real shard."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.detector = SimpleNamespace(device="cpu", runtime="stub", names={0: "person"})

    def analyze(self, job: ShardJob, progress=None) -> ShardResult:  # noqa: ANN001 - the actor's progress callback
        started = time.perf_counter()
        shard = job.shard
        t_s = shard.t_start_s
        write_table(job.path("detections"), "detections", [{
            "video_id": job.video_id, "content_key": job.content_key, "shard_index": shard.index,
            "frame_index": round(t_s * VIDEO_FPS), "t_s": t_s, "track_id": shard.index * SHARD_TRACK_STRIDE + 1,
            "class_id": 0, "class_name": "person", "confidence": 0.9, "x1": 1.0, "y1": 1.0, "x2": 9.0, "y2": 9.0,
            "run_id": job.run_id,
        }])
        write_table(job.path("clips"), "clips", [])  # as a real shard's sinks: a table without rows stages no file
        frames = expected_frames(job.info, self.config.analysis_fps, [shard])  # as the run's progress expects
        result = ShardResult(job.video_id, shard.index, "ok", frames_analyzed=frames, n_detections=1)
        commit_shard(job, result)  # the ledger row, as a real shard commits
        if progress is not None:
            progress(frames)
        result.wall_s = time.perf_counter() - started
        return result


def make_video(path: Path, seconds: float) -> Path:
    """A tiny real video (64x64, 4 fps, a keyframe every shard) of ``seconds``."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(VIDEO_FPS))
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.codec_context.gop_size = int(SHARD_SECONDS * VIDEO_FPS)
        for i in range(int(seconds * VIDEO_FPS)):
            image = np.full((64, 64, 3), (i * 7) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_listing(folder: Path, video: Path, count: int) -> None:
    """``count`` videos, 1,000 per folder: ``video``'s bytes and a ``free`` box naming the copy (a box
    any MP4 reader skips), so each is a distinct content, as distinct videos are."""
    from tests.media import tagged_mp4

    data = video.read_bytes()
    for i in range(count):
        sub = folder / f"{i // 1000:05d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"cam{i:08d}.mp4").write_bytes(tagged_mp4(data, f"copy {i:08d}"))


class ApiCounter:
    """Counts the driver's HTTP requests to the Prefect API and the events it emits."""

    def __init__(self) -> None:
        import httpx
        from prefect.events.clients import EventsClient

        self.requests = self.events = 0
        lock = threading.Lock()
        sync_send, async_send, emit = httpx.Client.send, httpx.AsyncClient.send, EventsClient.emit
        counter = self

        def count(name: str) -> None:
            with lock:
                setattr(counter, name, getattr(counter, name) + 1)

        def count_sync(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            count("requests")
            return sync_send(self, *args, **kwargs)

        async def count_async(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            count("requests")
            return await async_send(self, *args, **kwargs)

        async def count_emit(self, event):  # noqa: ANN001
            count("events")
            return await emit(self, event)

        httpx.Client.send, httpx.AsyncClient.send, EventsClient.emit = count_sync, count_async, count_emit


class Sampler:
    """Every 0.5 s: the driver's CPU seconds and RSS, and the CPU seconds of the Prefect server's
    processes and of Ray's (GCS, raylet, workers: the driver's other descendants), so processes
    that exit still count and the run's phases can be told apart afterwards."""

    def __init__(self, server_pid: int) -> None:
        import psutil

        self.server_pid = server_pid
        self.me = psutil.Process()
        self.driver: list[tuple[float, float, int]] = []  # (wall clock s, CPU s, RSS bytes)
        self._last: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._sample()
        self._start = self.totals()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        self.driver.append((time.time(), time.process_time(), self.me.memory_info().rss))
        for p in self.me.children(recursive=True):
            try:
                group = "prefect" if p.pid == self.server_pid or self.server_pid in [a.pid for a in p.parents()] else "ray"
                t = p.cpu_times()
                self._last[(group, p.pid)] = t.user + t.system
            except psutil.Error:
                continue

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def totals(self) -> dict[str, float]:
        return {g: sum(v for (group, _), v in self._last.items() if group == g) for g in ("prefect", "ray")}

    def stop(self) -> dict[str, float]:
        """CPU seconds per group since the sampler started."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return {g: v - self._start[g] for g, v in self.totals().items()}

    def driver_until(self, t_wall: float) -> tuple[float, int]:
        """The driver's CPU seconds used and its peak RSS from the start up to wall clock ``t_wall``."""
        upto = [d for d in self.driver if d[0] <= t_wall] or self.driver[:1]
        return upto[-1][1] - self.driver[0][1], max(d[2] for d in upto)


def _db_bytes(home: Path) -> int:
    return sum(f.stat().st_size for f in home.glob("*.db*"))


def _last_video_finished(lake: Path) -> float:
    """When the last video's row was made (epoch seconds): the ``videos`` table's ``finished_at``, one
    column of a table the run compacted at its end."""
    import pyarrow.compute as pc

    from videolake.pipeline.lake import Lake

    return pc.max(Lake.open(lake).read("videos", columns=["finished_at"])["finished_at"]).as_py().timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, required=True)
    parser.add_argument("--shards-per-video", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (each runs one stub shard at a time)")
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a new folder under /tmp, removed after")
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="vlscale-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        figures = run(work, args.videos, args.shards_per_video, args.workers)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))


def run(work: Path, videos: int, shards_per_video: int, workers: int) -> dict:
    from videolake.flows.server import free_port, stop_process_group, wait_until_healthy

    t0 = time.perf_counter()
    video = make_video(work / "tiny.mp4", shards_per_video * SHARD_SECONDS)
    make_listing(work / "videos", video, videos)
    print(f"listing: {videos} videos of {shards_per_video} shards, made in {time.perf_counter() - t0:.1f} s", flush=True)

    home = work / "prefect"
    home.mkdir()
    url = f"http://127.0.0.1:{free_port()}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url}
    log = open(work / "prefect-server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", url.split(":")[2][:-4],
         "--no-ui", "--no-scheduler", "--no-late-runs", "--analytics-off"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    os.environ.update(PREFECT_API_URL=url, PREFECT_HOME=str(home),
                      VIDEOLAKE_ANALYZER="bench.scale:StubAnalyzer",
                      PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    import ray

    ray.init(address="local", num_cpus=max(2, workers), include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 1024 * 1024, logging_level="ERROR", _temp_dir=str(work / "ray"))
    try:
        wait_until_healthy(url, server, work / "prefect-server.log")
        return measure(work, videos, shards_per_video, workers, server.pid, home)
    finally:
        ray.shutdown()
        stop_process_group(server)
        log.close()


def measure(work: Path, videos: int, shards_per_video: int, workers: int, server_pid: int, home: Path) -> dict:
    from videolake.flows.analyze import analyze

    counter = ApiCounter()
    db_before = _db_bytes(home)
    sampler = Sampler(server_pid)
    cpu_before, started = time.process_time(), time.time()
    t0 = time.perf_counter()
    config = {"shard_seconds": SHARD_SECONDS, "clip_seconds": SHARD_SECONDS, "analysis_fps": 1, "workers": workers}
    summary = analyze(sources=[str(work / "videos")], lake=str(work / "lake"), config=config, show_progress=True)
    wall_s = time.perf_counter() - t0
    driver_cpu_s = time.process_time() - cpu_before
    time.sleep(5)  # the server writes the run's last events
    used = sampler.stop()
    shards = summary.shards_processed
    assert summary.videos_ok == videos and shards == videos * shards_per_video, summary.lines()
    # The fan-out ends with the last video's row; the rest of the flow is compaction and the run's row.
    fanout_end = _last_video_finished(work / "lake")
    fanout_cpu_s, fanout_rss = sampler.driver_until(fanout_end)
    load = os.getloadavg()
    figures = {
        "videos": videos, "shards": shards, "workers": workers, "wall_s": round(wall_s, 1),
        "shards_per_s": round(shards / wall_s, 1),
        "driver_cpu_ms_per_shard": round(1000 * driver_cpu_s / shards, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "fanout_s": round(fanout_end - started, 1),
        "fanout_shards_per_s": round(shards / (fanout_end - started), 1),
        "fanout_driver_cpu_ms_per_shard": round(1000 * fanout_cpu_s / shards, 2),
        "fanout_driver_capacity_shards_per_s": round(shards / fanout_cpu_s, 1),
        "fanout_peak_rss_mb": round(fanout_rss / 2**20, 1),
        "prefect_requests_per_shard": round(counter.requests / shards, 3),
        "prefect_events_per_shard": round(counter.events / shards, 3),
        "prefect_db_bytes_per_shard": round((_db_bytes(home) - db_before) / shards, 1),
        "prefect_server_cpu_ms_per_shard": round(1000 * used["prefect"] / shards, 2),
        "ray_cpu_ms_per_shard": round(1000 * used["ray"] / shards, 2),
        "load_average": [round(x, 2) for x in load],
    }
    print(f"{shards} shards of {videos} videos in {wall_s:.1f} s: {figures['shards_per_s']} shards/s end to end "
          f"({workers} stub workers; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    print(f"driver: {figures['driver_cpu_ms_per_shard']} CPU ms/shard, peak RSS {figures['peak_rss_mb']} MB")
    print(f"fan-out (listing to the last video's row, before compaction): {figures['fanout_s']} s, "
          f"{figures['fanout_shards_per_s']} shards/s; driver {figures['fanout_driver_cpu_ms_per_shard']} CPU ms/shard "
          f"(capacity {figures['fanout_driver_capacity_shards_per_s']} shards per CPU-second), "
          f"peak RSS {figures['fanout_peak_rss_mb']} MB")
    print(f"Prefect: {figures['prefect_requests_per_shard']} API requests, {figures['prefect_events_per_shard']} events, "
          f"{figures['prefect_db_bytes_per_shard']} database bytes and {figures['prefect_server_cpu_ms_per_shard']} "
          f"server CPU ms per shard")
    print(f"Ray (GCS, raylet, workers): {figures['ray_cpu_ms_per_shard']} CPU ms per shard")
    return figures


if __name__ == "__main__":
    main()
