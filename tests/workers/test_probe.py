"""Probing in a Ray worker with a time limit, on a real local Ray."""

import time

import psutil
import pytest

from videolake.pipeline.decode import probe
from videolake.pipeline.errors import DecodeError, SourceError, TimedOut
from videolake.workers.probe import probe_in_worker

pytestmark = pytest.mark.slow


def test_a_probe_in_a_worker_gives_what_a_local_probe_gives_and_its_typed_errors(ray_local, samples_dir, corpus):
    path = str(samples_dir / "bikes.mp4")
    assert probe_in_worker(path, 8192 * 8192, 3600.0, timeout_s=120) == probe(path)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        probe_in_worker(path, 640 * 200, 3600.0, timeout_s=120)
    with pytest.raises(SourceError, match="file is empty"):
        probe_in_worker(str(corpus["zero_bytes"].path), 8192 * 8192, 3600.0, timeout_s=120)


def test_a_probe_past_its_time_limit_is_stopped_in_its_worker(ray_local, tmp_path):
    from tests.media import all_intra

    asset = all_intra(tmp_path / "intra.mkv", seconds=60)  # 1,500 keyframes to demux
    with pytest.raises(TimedOut, match="probing took longer than 0 s"):
        probe_in_worker(str(asset.path), 8192 * 8192, 3600.0, timeout_s=0.001)
    deadline = time.monotonic() + 30
    while _probing() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _probing(), "the worker running the stopped probe lives on"
    assert probe_in_worker(str(asset.path), 8192 * 8192, 3600.0, timeout_s=120).duration_s == pytest.approx(60, abs=0.1)


def _probing() -> list[int]:
    """Ray workers running a probe now (Ray names a worker's process after its task)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if "ray::_probe" in " ".join(process.info["cmdline"] or []) and process.status() != psutil.STATUS_ZOMBIE:
            found.append(process.pid)
    return found
