"""Frames/s per GPU at fp16 for batch sizes 1, 8, 32: detector alone, and decode → detect → track → lake.

    python bench/gpu_bench.py [--imgsz 640] [--seconds 60] [--batches 1 8 32] [--device cuda]

Runs in one process on one GPU (what one Ray actor does), on a generated 640x360 video of real
frames; then once through the CLI (Prefect + Ray included) at the CUDA default batch. Prints a
Markdown table. ``bench/gpu_check.sh`` calls it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the generated 640x360 video at 25 fps")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI run")
    args = parser.parse_args()

    import torch

    from videolake.pipeline.actions import ActionModel
    from videolake.pipeline.analyze import ShardJob, VideoAnalyzer
    from videolake.pipeline.config import RunConfig
    from videolake.pipeline.decode import iter_frames, probe
    from videolake.pipeline.detect import Detector
    from videolake.pipeline.models import default_actions_path, default_detector_path
    from videolake.pipeline.shards import Shard
    from tests.media import looped_video

    work = Path(tempfile.mkdtemp(prefix="videolake-gpu-"))
    video = looped_video(work / "long.mp4", args.seconds, name="bikes.mp4", size=(640, 360))
    info = probe(video.path)
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device
    frames = [f.image for f, _ in zip(iter_frames(video.path), range(256))]
    weights = str(default_detector_path())
    rows = []
    for batch in args.batches:
        cfg = RunConfig(analysis_fps=0, imgsz=args.imgsz, batch=batch, device=args.device, shard_seconds=0)
        detector = Detector(weights, imgsz=args.imgsz, conf=cfg.conf, device=args.device)
        detector(frames[:batch])
        torch.cuda.synchronize() if args.device.startswith("cuda") else None
        t0 = time.perf_counter()
        n = 0
        for _ in range(2):
            for i in range(0, len(frames) - batch + 1, batch):
                detector(frames[i:i + batch])
                n += batch
        detect_fps = n / (time.perf_counter() - t0)
        analyzer = VideoAnalyzer(cfg, detector, ActionModel.load(default_actions_path()))
        job = ShardJob("gpu-bench", f"b{batch}", info, Shard(0, 0.0, float("inf"), 0.0, 0, 0.0), str(work / "lake"),
                       "gpu-bench", f"b{batch}")
        result = analyzer.analyze(job)
        assert result.status == "ok", result.error
        rows.append((batch, detector.runtime, detector.half, detect_fps, result.frames_analyzed / result.wall_s))
        print(f"batch {batch}: detector {detect_fps:.0f} frames/s, end to end {rows[-1][-1]:.0f} frames/s", flush=True)

    print(f"\n{name}; imgsz {args.imgsz}; {info.width}x{info.height} video, {info.duration_s:.0f} s; one process, one GPU\n")
    print("| batch | runtime | fp16 | detector frames/s | decode→lake frames/s |")
    print("|---|---|---|---|---|")
    for batch, runtime, half, det, e2e in rows:
        print(f"| {batch} | {runtime} | {half} | {det:.0f} | {e2e:.0f} |")
    if not args.no_cli:
        cmd = [str(Path(sys.executable).parent / "videolake"), "run", str(video.path), "--out", str(work / "cli-lake"),
               "-q", "--analysis-fps", "0", "--imgsz", str(args.imgsz), "--device", args.device, "--shard-seconds", "0"]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"videolake failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        n = int(re.search(r"frames analysed: (\d+)", out.stdout).group(1))
        print(f"\nCLI end to end (Prefect + Ray + start-up), default CUDA batch: {n} frames in {wall:.1f} s = {n / wall:.0f} frames/s")


if __name__ == "__main__":
    main()
