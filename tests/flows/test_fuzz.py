"""200 damaged and odd videos in one run: every one ends ok or failed with a reason, nothing crashes,
memory stays bounded. Real Prefect API, real Ray, real models; the variants are generated
(tests/media.py ``make_fuzz_corpus``): real frames in nine codecs and containers, a real sample's
own bytes, raw H.264, a stream that switches to 3840x2160, each truncated, bit-flipped, zeroed,
spliced, shuffled, given another's header or the wrong extension, plus hand-made hostile headers."""

from __future__ import annotations

import threading
import time
from collections import Counter

import psutil
import pytest

from videolake.flows.analyze import analyze
from videolake.pipeline.query import run_sql

pytestmark = pytest.mark.slow

# Tiny work per video: the point is every path through probe, decode and the bookkeeping, not detection.
FUZZ = {"imgsz": 160, "analysis_fps": 1.0, "batch": 4, "workers": 2, "shard_seconds": 0, "max_pixels": 1920 * 1088,
        "max_duration_s": 60.0, "probe_timeout_s": 120.0, "shard_timeout_s": 300.0}
WORKER_RSS_LIMIT = 3 << 30   # any one process of the run (a worker holds torch, ONNX Runtime and the models)
DRIVER_GROWTH_LIMIT = 1 << 30


class _PeakMemory:
    """The largest resident set of any process of this process's tree, sampled every 0.2 s."""

    def __init__(self) -> None:
        self.peak_bytes, self.peak_name = 0, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for process in me.children(recursive=True):
                try:
                    rss = process.memory_info().rss
                    if rss > self.peak_bytes:
                        self.peak_bytes, self.peak_name = rss, " ".join(process.cmdline())[:60]
                except psutil.Error:
                    continue
            self._stop.wait(0.2)

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_200_damaged_and_odd_videos_each_end_ok_or_failed_with_a_reason(prefect_api, ray_local, tmp_path):
    from tests.media import make_fuzz_corpus

    variants = make_fuzz_corpus(tmp_path / "fuzz", n=200)
    assert len(variants) == 200
    lake = str(tmp_path / "lake")
    driver_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    with _PeakMemory() as memory:
        summary = analyze(sources=[str(tmp_path / "fuzz")], lake=lake, config=FUZZ, show_progress=False)
    wall_s = time.perf_counter() - started
    driver_growth = psutil.Process().memory_info().rss - driver_before

    assert summary.videos_ok + summary.videos_failed == 200 and summary.videos_quarantined == 0
    rows = run_sql(lake, "SELECT uri, status, error_kind, error, warning FROM videos").to_pylist()
    assert sorted(r["uri"].rsplit("/", 1)[-1] for r in rows) == sorted(variants)
    for row in rows:  # ok, or failed with a kind and a one-line reason that names the video
        if row["status"] != "ok":
            assert row["status"] == "failed" and row["error_kind"] in ("source", "decode"), row
            assert row["error"] and "\n" not in row["error"] and row["uri"] in row["error"], row
    by_kind = Counter(r["error_kind"] or "ok" for r in rows)
    assert by_kind["ok"] >= 50 and by_kind["decode"] >= 30, by_kind
    refused = {r["uri"].rsplit("/", 1)[-1]: r["error"] for r in rows if r["status"] == "failed"}
    assert "exceeds the limit" in refused["y4m_9000.mkv"] and "y4m_60000.mp4" in refused  # FFmpeg's own limit
    assert memory.peak_bytes < WORKER_RSS_LIMIT, (memory.peak_bytes, memory.peak_name)
    assert driver_growth < DRIVER_GROWTH_LIMIT, driver_growth
    warned = sum(1 for r in rows if r["status"] == "ok" and r["warning"])
    print(f"fuzz: 200 variants in {wall_s:.0f} s: {dict(by_kind)}, {warned} ok with a warning; peak RSS "
          f"{memory.peak_bytes / 2**20:.0f} MiB ({memory.peak_name}); driver grew {driver_growth / 2**20:.0f} MiB")
