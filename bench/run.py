"""Benchmark: videolake against the naive Ultralytics loop, on the same videos and weights.

    python bench/run.py [--imgsz 640] [--long-seconds 20] [--out bench/RESULTS.md]

Runs, one after another, each in its own process (peak RSS is the whole process tree's):
1. naive: ``YOLO(w).track(video, stream=True, imgsz, conf, tracker="bytetrack.yaml")`` over every frame;
2. videolake at equal work: ``videolake run --analysis-fps 0`` (Prefect + Ray included), then the
   same command again (an empty incremental run);
3. videolake with its defaults;
4. the inference-only ceiling: the same model, runtime and batch size fed pre-decoded, pre-letterboxed frames;
5. peak RSS against video length: defaults at imgsz 320 and 1 fps on a 1-minute and a 10-minute video.
Prints a table with the ratios and box F1 of (2) against (1), and writes it to ``--out``.

Both sides run at the same confidence threshold (``--conf``, videolake's default 0.25): ``model.track``
otherwise lowers it to 0.1 for its tracker, and then returns different boxes (that was the F1 of 0.737).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_rss(proc: subprocess.Popen) -> tuple[int, float, str]:
    """Run to completion, sampling the RSS of the process and its children; (rc, peak GiB, output)."""
    peak = 0
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    reader.join()
    return proc.returncode, peak / 2**30, "".join(out)


NAIVE = r"""
import json, sys, time
from ultralytics import YOLO
weights, imgsz, conf, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
videos = sys.argv[5:]
model = YOLO(weights)
rows, frames, t0 = [], 0, time.perf_counter()
for video in videos:
    for i, r in enumerate(model.track(video, stream=True, imgsz=imgsz, tracker="bytetrack.yaml", verbose=False, persist=False,
                                      agnostic_nms=True, conf=conf)):
        frames += 1
        b = r.boxes
        for box, cls in zip(b.xyxy.tolist(), b.cls.tolist()):
            rows.append([video, i, int(cls), *box])
wall = time.perf_counter() - t0
json.dump({"frames": frames, "wall_s": wall, "rows": rows}, open(out, "w"))
"""

CEILING = r"""
import json, sys, time, av, numpy as np, torch
from ultralytics.data.augment import LetterBox
from videolake.pipeline.detect import Detector
weights, out, runtime = sys.argv[1], sys.argv[4], sys.argv[5]
imgsz, batch, threads, per_video = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[6]), int(sys.argv[7])
videos = sys.argv[8:]
torch.set_num_threads(threads)
detector = Detector(weights, imgsz=imgsz, runtime=runtime, threads=threads)  # loads, exports (cached) and warms up
net = detector.model.predictor.model
rows = []
for video in videos:
    frames, total = [], 0
    with av.open(video) as c:
        for f in c.decode(video=0):
            total += 1
            if len(frames) < per_video:
                frames.append(f.to_ndarray(format="bgr24"))
    lb = LetterBox((imgsz, imgsz), auto=True, stride=32)  # the rectangular letterbox Ultralytics' predictor uses
    x = np.stack([lb(image=f) for f in frames])[..., ::-1].transpose(0, 3, 1, 2)
    x = torch.from_numpy(np.ascontiguousarray(x)).float() / 255
    with torch.inference_mode():
        net(x[:batch])  # first call at this input shape
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            net(x[i:i + batch])
        wall = time.perf_counter() - t0
    rows.append({"video": video, "frames_timed": len(x), "frames_in_video": total, "wall_s": wall,
                 "input_shape": list(x.shape[1:])})
json.dump({"runtime": detector.runtime, "videos": rows}, open(out, "w"))
"""


def _note(label: str, result: dict) -> None:
    """One line per run as it finishes, so a long benchmark shows its figures early."""
    shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items() if k != "out"}
    print(f"[{time.strftime('%H:%M:%S')}] {label}: {shown}", file=sys.stderr, flush=True)


def _videolake(videos: list[str], lake: Path, extra: list[str], env: dict | None = None) -> dict:
    cmd = [str(Path(sys.executable).parent / "videolake"), "run", *videos, "--out", str(lake), "-q", *extra]
    started_at = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    rc, peak, out = _peak_rss(proc)
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"videolake failed:\n{out[-3000:]}")
    frames = int(re.search(r"frames analysed: (\d+)", out).group(1))
    startup = _startup_s(lake, started_at) if frames else None  # an empty run analyses nothing
    result = {"frames": frames, "wall_s": wall, "rss_gib": peak, "startup_s": startup, "out": out}
    _note(f"videolake {' '.join(extra)} → {lake.name}", result)
    return result


@contextlib.contextmanager
def _services(work: Path):
    """A Prefect server and a one-node Ray cluster already running, as under `videolake serve` or on a cluster;
    yields the environment that points `videolake run` at them."""
    from videolake.flows.server import free_port, stop_process_group, wait_until_healthy

    prefect_port, ray_port = free_port(), free_port()
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect-home"), "RAY_AUTH_MODE": "disabled",
           "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api", "RAY_ADDRESS": f"127.0.0.1:{ray_port}"}
    log = open(work / "services.log", "w")
    procs = [
        subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port),
                          "--no-ui", "--analytics-off"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True),
        subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--port", str(ray_port),
                          "--num-cpus", str(os.cpu_count() or 1), "--include-dashboard", "false", "--disable-usage-stats",
                          "--temp-dir", str(work / "ray")],  # its address file stays there, not in /tmp/ray
                         env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True),
    ]
    try:
        wait_until_healthy(env["PREFECT_API_URL"], procs[0], work / "services.log")
        time.sleep(5)  # Ray's head: `videolake run` retries its connection until the head answers anyway
        yield env
    finally:
        for proc in procs:
            stop_process_group(proc)
        log.close()


def _startup_s(lake: Path, started_at: float) -> float | None:
    """Command start to the start of the first shard: its ledger commit time less its own wall time."""
    from videolake.pipeline.query import run_sql

    first = run_sql(lake, "SELECT min(epoch_ms(committed_at) / 1000.0 - wall_s) AS t FROM shards WHERE status = 'ok'"
                    ).column("t")[0].as_py()
    return None if first is None else first - started_at


def _f1(naive_rows: list, lake: Path, videos: list[str]) -> float:
    """Box F1 at IoU 0.5 per frame, matched by class, of videolake's tracked detections against the naive loop's.

    ``model.track`` returns only the boxes a track claimed, so both sides are compared on tracked boxes.
    """
    from videolake.pipeline.query import run_sql

    ours = run_sql(lake, "SELECT v.uri, d.frame_index, d.class_id, d.x1, d.y1, d.x2, d.y2 FROM detections d "
                         "JOIN videos v USING (video_id) WHERE d.track_id IS NOT NULL").to_pylist()
    index = {str(Path(v).resolve()): v for v in videos}
    by_frame: dict[tuple, list] = {}
    for r in ours:
        by_frame.setdefault((index.get(r["uri"], r["uri"]), r["frame_index"], r["class_id"]), [[], []])[0].append(
            [r["x1"], r["y1"], r["x2"], r["y2"]])
    for video, i, cls, *box in naive_rows:
        by_frame.setdefault((video, i, cls), [[], []])[1].append(box)
    from videolake.pipeline.agreement import match_boxes

    matched = sum(len(match_boxes(a, b)) for a, b in by_frame.values())
    total = sum(len(a) + len(b) for a, b in by_frame.values())
    return 2 * matched / max(1, total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--conf", type=float, default=0.25, help="confidence threshold of both the naive loop and videolake")
    parser.add_argument("--runtime", default="auto", help="videolake's detector runtime: auto, onnx or torch")
    parser.add_argument("--no-rss-check", action="store_true", help="skip run 5 (1-minute vs 10-minute video)")
    parser.add_argument("--ceiling-frames", type=int, default=96, help="frames of each video timed for the ceiling")
    parser.add_argument("--long-seconds", type=float, default=20.0, help="length of the generated 640x360 video")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()

    from videolake.pipeline.models import default_detector_path
    from videolake.pipeline.samples import write_samples
    from tests.media import looped_video

    work = Path(tempfile.mkdtemp(prefix="videolake-bench-"))
    videos = [str(p) for p in write_samples(work / "samples")]
    long = looped_video(work / "long.mp4", args.long_seconds, name="bikes.mp4")
    videos.append(str(long.path))
    from videolake.pipeline.decode import probe

    video_s = sum(probe(v).duration_s for v in videos)
    weights = str(default_detector_path())
    results = {}

    naive_json = work / "naive.json"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", NAIVE, weights, str(args.imgsz), str(args.conf), str(naive_json), *videos],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rc, peak, out = _peak_rss(proc)
    if rc != 0:
        raise SystemExit(f"naive loop failed:\n{out[-3000:]}")
    naive = json.loads(naive_json.read_text())
    results["1 naive Ultralytics track loop"] = {"frames": naive["frames"], "wall_s": time.perf_counter() - t0,
                                                 "rss_gib": peak, "startup_s": None}
    _note("naive", results["1 naive Ultralytics track loop"])

    # Equal work: every frame through the detector, as the naive loop does (the motion gate off; bench/gating.py times it).
    equal_args = ["--analysis-fps", "0", "--imgsz", str(args.imgsz), "--batch", str(args.batch), "--shard-seconds", "0",
                  "--conf", str(args.conf), "--runtime", args.runtime, "--motion-gate", "off"]
    equal = _videolake(videos, work / "lake_equal", equal_args)
    results["2 videolake, every frame"] = equal
    empty = _videolake(videos, work / "lake_equal", equal_args)
    results["3 videolake, defaults"] = _videolake(videos, work / "lake_defaults", ["--runtime", args.runtime])
    shortest = min(videos, key=lambda v: probe(v).duration_s)
    with _services(work) as env:  # start-up when Prefect and Ray are already up: a scheduled run, a cluster
        warm = _videolake([shortest], work / "lake_services", equal_args, env=env)

    ceiling_json = work / "ceiling.json"
    threads = str(os.cpu_count() or 1)  # what one actor gets on this machine (workers/pool.py: plan_workers)
    proc = subprocess.Popen([sys.executable, "-c", CEILING, weights, str(args.imgsz), str(args.batch), str(ceiling_json),
                             args.runtime, threads, str(args.ceiling_frames), *videos],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    rc, peak, out = _peak_rss(proc)
    if rc != 0:
        raise SystemExit(f"ceiling failed:\n{out[-3000:]}")
    ceiling = json.loads(ceiling_json.read_text())
    # Each video's timed frames stand for all of its frames: the same mix of input shapes as runs 1 and 2.
    per_video = ceiling["videos"]
    ceiling_frames = sum(v["frames_in_video"] for v in per_video)
    ceiling_wall = sum(v["frames_in_video"] * v["wall_s"] / v["frames_timed"] for v in per_video)
    results["4 inference only (ceiling)"] = {"frames": ceiling_frames, "wall_s": ceiling_wall, "rss_gib": peak,
                                             "startup_s": None}
    _note("ceiling", results["4 inference only (ceiling)"])

    rss = {}
    if not args.no_rss_check:
        for minutes in (1, 10):
            asset = looped_video(work / f"rss_{minutes}min.mp4", 60.0 * minutes)
            rss[minutes] = _videolake([str(asset.path)], work / f"lake_rss_{minutes}", [
                "--imgsz", "320", "--analysis-fps", "1", "--runtime", args.runtime])

    f1 = _f1(naive["rows"], work / "lake_equal", videos)
    fps = {k: v["frames"] / v["wall_s"] for k, v in results.items()}
    names = list(results)
    lines = [
        "# Benchmark results\n",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"{platform.python_version()}; imgsz {args.imgsz}, batch {args.batch}; videos: {len(videos)} "
        f"({video_s:.1f} s of video: the three samples and a {args.long_seconds:.0f} s loop of bikes.mp4, 640x272); "
        f"conf {args.conf} on both sides; videolake detector runtime {args.runtime} (ceiling ran {ceiling['runtime']} "
        f"on up to {args.ceiling_frames} frames of each video, inputs "
        f"{', '.join('x'.join(map(str, v['input_shape'])) for v in per_video)}, weighted by each video's frames); "
        f"load average at the end {os.getloadavg()[0]:.1f} (the machine is shared).\n",
        "| run | frames | wall s | frames/s | video-s per wall-s | peak RSS GiB | start-up s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        r = results[name]
        vs = f"{video_s / r['wall_s']:.2f}" if not name.startswith("4") else ""
        su = f"{r['startup_s']:.1f}" if r.get("startup_s") is not None else ""
        lines.append(f"| {name} | {r['frames']} | {r['wall_s']:.1f} | {fps[name]:.2f} | {vs} | {r['rss_gib']:.2f} | {su} |")
    lines += [
        "",
        f"- (2)/(1) frames/s: **{fps[names[1]] / fps[names[0]]:.2f}** (target ≥ 2.0)",
        f"- (3)/(1) frames/s: {fps[names[2]] / fps[names[0]]:.2f}; (3) video-seconds per wall-second: "
        f"**{video_s / results[names[2]]['wall_s']:.2f}** (target ≥ 1.0)",
        f"- (2)/(4) frames/s: **{fps[names[1]] / fps[names[3]]:.2f}** (target ≥ 0.85)",
        f"- detection agreement of (2) against (1): box F1 at IoU 0.5, by class and frame: **{f1:.3f}** (target ≥ 0.97)",
        "- start-up: command start to the start of the first shard (its ledger commit time less its wall time; "
        "target < 10 s)",
        f"- start-up with a Prefect server and Ray already running (as under `videolake serve` or on a cluster), "
        f"{Path(shortest).name} at the settings of (2): **{warm['startup_s']:.1f} s**",
        f"- empty incremental run (the command of (2) again on its lake): **{empty['wall_s']:.1f} s** (target < 5 s)",
        "- the naive loop runs with `agnostic_nms=True`, as videolake does for detectors whose classes are all states "
        "of a person (the default `Normal`/`Fall` detector), and with videolake's `conf`; F1 compares tracked boxes, "
        "the only ones `model.track` returns",
    ]
    if rss:
        a, b = rss[1]["rss_gib"], rss[10]["rss_gib"]
        lines.append(f"- peak RSS of the process tree, defaults at imgsz 320 and 1 fps: 1-minute video {a:.2f} GiB "
                     f"({rss[1]['frames']} frames), 10-minute video {b:.2f} GiB ({rss[10]['frames']} frames): "
                     f"**{100 * (b - a) / a:+.1f} %** (target within 10 %)")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
