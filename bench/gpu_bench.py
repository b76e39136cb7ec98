"""Is the GPU kept fed? Decode and end-to-end frames/s, and GPU utilisation, on one GPU, as one table.

    python bench/gpu_bench.py [--copies 20] [--seconds-1080p 60] [--decoders 4] [--imgsz 640]

Two inputs: the bench set of ``bench/run.py`` (the three samples and a 20 s loop of bikes.mp4),
hard-linked ``--copies`` times so there is enough work to measure; and a generated 1080p H.264
video of real frames (``--seconds-1080p`` at 25 fps), linked ``--copies / 2`` times. For each:

- decode frames/s, every frame decoded and converted to BGR as the workers do: one thread, and
  ``--decoders`` threads side by side, in software; and with NVDEC (PyAV's hardware decoding);
- the detector alone at batch 32, fp16;
- ``videolake run`` end to end (Prefect, Ray, one GPU actor) at every frame (``--analysis-fps 0``),
  with one decoder per actor and with ``--decoders``: frames/s over the run's wall time and over its
  shards (first shard start to last commit), and the GPU's utilisation sampled by ``nvidia-smi``.

Prints a Markdown table; ``bench/gpu_check.sh`` runs it. Target (issue 16): at least 1,500 frames/s
end to end on one H200-class GPU with the default models.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bench_set(work: Path, copies: int) -> tuple[Path, int]:
    """``bench/run.py``'s four videos, ``copies`` times over (each copy a distinct content: ``_copies``)."""
    from videolake.pipeline.samples import write_samples
    from tests.media import looped_video

    originals = [*write_samples(work / "samples"), looped_video(work / "long.mp4", 20.0, name="bikes.mp4").path]
    return _copies(work / "bench-set", originals, copies)


def video_1080p(work: Path, seconds: float, copies: int) -> tuple[Path, int]:
    """A 1080p, 25 fps video of real frames (H.264 where PyAV's FFmpeg has libx264), ``copies`` times over."""
    import av

    from tests.media import encode, real_frames

    frames = real_frames("carphone_pristine.mp4", limit=120, size=(1920, 1080))
    cycle = frames + frames[::-1]
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    path = encode(work / "1080p.mp4", [cycle[i % len(cycle)] for i in range(int(seconds * 25))], fps=25,
                  codec=codec).path
    return _copies(work / "1080p", [path], max(1, copies // 2))


def _copies(folder: Path, originals: list[Path], copies: int) -> tuple[Path, int]:
    """``copies`` of each MP4, each with a ``free`` box of its own: byte copies of one file would be one
    video to the lake (it knows a video by its content) and be analysed once."""
    from videolake.pipeline.decode import probe
    from tests.media import tagged_mp4

    folder.mkdir(parents=True)
    frames = 0
    for original in originals:
        info, data = probe(original), Path(original).read_bytes()
        for k in range(copies):
            (folder / f"{k:03d}-{Path(original).name}").write_bytes(tagged_mp4(data, f"copy {k:03d}"))
            frames += info.n_frames_estimate or 0
    return folder, frames


def decode_fps(folder: Path, threads: int, hardware: bool) -> float:
    """Frames/s decoding every frame of every video in ``folder`` to BGR, ``threads`` videos at once."""
    from videolake.pipeline.decode import iter_frames, use_hardware_decoding

    if hardware and not use_hardware_decoding("cuda"):
        return float("nan")
    try:
        paths = sorted(folder.iterdir())[: max(4, 2 * threads)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            frames = sum(pool.map(lambda p: sum(1 for _ in iter_frames(p)), paths))
        return frames / (time.perf_counter() - t0)
    finally:
        use_hardware_decoding(None)


def detector_fps(imgsz: int, device: str, batch: int = 32) -> tuple[float, bool]:
    """The detector alone on real frames at ``batch``: frames/s and whether it ran at fp16."""
    import torch

    from videolake.pipeline.detect import Detector
    from videolake.pipeline.models import default_detector_path
    from tests.media import real_frames

    frames = real_frames("bikes.mp4", limit=batch)
    detector = Detector(str(default_detector_path()), imgsz=imgsz, device=device)
    detector(frames)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(10):
        detector(frames)
    sync()
    return 10 * len(frames) / (time.perf_counter() - t0), detector.half


class GpuSampler:
    """``nvidia-smi`` utilisation samples every 200 ms while a block runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def __enter__(self) -> GpuSampler:
        try:
            self._proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                           "-i", "0", "-lms", "200"], stdout=subprocess.PIPE, text=True)
        except FileNotFoundError:
            self._proc = None
            return self
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            if line.strip().isdigit():
                self.samples.append(float(line))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()

    def mean(self) -> float:
        busy = self.samples[2:] or self.samples  # the first samples fall before the work starts
        return statistics.fmean(busy) if busy else float("nan")


def end_to_end(folder: Path, work: Path, imgsz: int, decoders: int, device: str) -> dict:
    """One ``videolake run`` on the GPU: frames/s over the wall time and over the shards, and GPU utilisation."""
    from videolake.pipeline.query import run_sql

    lake = work / f"lake-{folder.name}-{decoders}"
    cmd = [sys.executable, "-m", "videolake", "run", str(folder), "--out", str(lake), "-q",
           "--device", device, "--analysis-fps", "0", "--imgsz", str(imgsz), "--shard-seconds", "10",
           "--decoders", str(decoders)]
    with GpuSampler() as gpu:
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        wall_s = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"videolake failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    frames = int(re.search(r"frames analysed: (\d+)", out.stdout).group(1))
    span = run_sql(lake, "SELECT min(epoch(committed_at) - wall_s) AS first, max(epoch(committed_at)) AS last, "
                         "count(*) AS shards FROM shards WHERE status = 'ok'").to_pylist()[0]
    return {"frames": frames, "wall_fps": frames / wall_s, "shards_fps": frames / max(1e-9, span["last"] - span["first"]),
            "shards": span["shards"], "gpu_util": gpu.mean()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=20, help="copies of the bench set (the 1080p video: half)")
    parser.add_argument("--seconds-1080p", type=float, default=60.0)
    parser.add_argument("--decoders", type=int, default=4, help="shards one GPU actor runs at once")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of this script where no GPU is lent")
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to torch")
    work = Path(tempfile.mkdtemp(prefix="videolake-gpu-"))
    inputs = {"bench set": bench_set(work, args.copies), "1080p": video_1080p(work, args.seconds_1080p, args.copies)}
    det_fps, half = detector_fps(args.imgsz, args.device)
    print(f"detector alone, batch 32, fp16 {half}: {det_fps:.0f} frames/s", flush=True)
    rows = []
    for name, (folder, frames) in inputs.items():
        row = {"input": name, "frames": frames,
               "dec1": decode_fps(folder, 1, False), "decN": decode_fps(folder, args.decoders, False),
               "nvdec": decode_fps(folder, args.decoders, True)}
        for decoders in (1, args.decoders):
            row[decoders] = end_to_end(folder, work, args.imgsz, decoders, args.device)
            print(f"{name}, {decoders} decoder(s): {row[decoders]}", flush=True)
        rows.append(row)
        print(f"{name}: decode {row['dec1']:.0f} / {row['decN']:.0f} / NVDEC {row['nvdec']:.0f} frames/s", flush=True)

    n = args.decoders
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"{args.device} (dry run)"
    print(f"\n{name}; imgsz {args.imgsz}; detector alone at batch 32, fp16 {half}: "
          f"{det_fps:.0f} frames/s; every frame analysed; {os.cpu_count()} CPU cores\n")
    print(f"| input | frames | decode 1 thread | decode {n} threads | NVDEC {n} threads | end to end, 1 decoder "
          f"(wall / shards) | GPU % | end to end, {n} decoders (wall / shards) | GPU % |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        one, many = r[1], r[n]
        print(f"| {r['input']} | {r['frames']} | {r['dec1']:.0f} | {r['decN']:.0f} | {r['nvdec']:.0f} | "
              f"{one['wall_fps']:.0f} / {one['shards_fps']:.0f} | {one['gpu_util']:.0f} | "
              f"{many['wall_fps']:.0f} / {many['shards_fps']:.0f} | {many['gpu_util']:.0f} |")
    print("\nframes/s; decode: every frame to BGR, as the workers do; end to end: `videolake run --device cuda "
          "--analysis-fps 0`, over the command's wall time / from the first shard's start to the last commit")


if __name__ == "__main__":
    main()
