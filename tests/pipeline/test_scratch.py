"""The private scratch folder and the sweep of what killed runs left behind."""

import os
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from videolake.pipeline.errors import ConfigError
from videolake.pipeline.scratch import pid_alive, process_tag, scratch_dir, sweep_leftovers


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert not pid_alive(process.pid)
    return process.pid


def test_the_scratch_folder_is_private_and_refused_when_it_is_not(private_tmp):
    folder = scratch_dir()
    assert folder == private_tmp / f"videolake-{os.getuid()}" and stat.S_IMODE(folder.stat().st_mode) == 0o700
    folder.chmod(0o777)  # another user could plant or read files in it
    with pytest.raises(ConfigError, match="not a private folder"):
        scratch_dir()


def test_the_sweep_removes_what_dead_processes_left_and_nothing_else(private_tmp):
    scratch, host, dead, alive = scratch_dir(), process_tag().rsplit("-", 1)[0], _dead_pid(), os.getpid()
    lake = private_tmp / "lake" / "_staging" / "detections" / "config_hash=h" / "v"
    lake.mkdir(parents=True)
    table, log = private_tmp / "lake" / "detections", private_tmp / "lake" / "detections" / "_delta_log"
    log.mkdir(parents=True)
    (scratch / "ray").mkdir()
    session = scratch / "ray" / f"session_2026-11-30_16-29-06_517572_{dead}"
    (session / "logs").mkdir(parents=True)
    # A process of the dead run that outlived it, holding a log of its session open (Ray's agents do).
    orphan = subprocess.Popen([sys.executable, "-c", f"f = open({str(session / 'logs' / 'agent.log')!r}, 'w'); "
                               "import time; time.sleep(600)"])
    day_old = time.time() - 2 * 24 * 3600
    planted = {
        scratch / f"prefect-server-{dead}-0a1b2c3d.log": False,
        scratch / f"prefect-server-{alive}-0a1b2c3d.log": True,
        scratch / f"_tmp-{host}-{dead}-0a1b2c3d4e5f-c-s00001.parquet.inprogress": False,
        lake / f"_tmp-{host}-{dead}-0a1b2c3d4e5f-c-s00001.parquet.inprogress": False,
        lake / f"_tmp-{host}-{alive}-0a1b2c3d4e5f-c-s00002.parquet.inprogress": True,
        lake / "_tmp-0123456789abcdef0123456789abcdef-c-s00003.parquet.inprogress": True,   # unattributable, fresh
        lake / "_tmp-fedcba9876543210fedcba9876543210-c-s00004.parquet.inprogress": False,  # unattributable, 2 days old
        lake / f"_tmp-otherhost-{dead}-0a1b2c3d4e5f-c-s00005.parquet.inprogress": True,     # another host's writer
        lake / "c-s00000.parquet": True,
        private_tmp / "lake" / f"_tmp-{host}-{dead}-0a1b2c3d4e5f-_videolake.json.inprogress": False,  # the marker's
        table / f"_tmp-{host}-{dead}-0a1b2c3d4e5f-x.parquet.inprogress": False,  # an older layout's, in a table's folder
        log / f"_tmp-{host}-{dead}-0a1b2c3d4e5f-y.json.inprogress": True,  # Delta logs are not walked (not ours to write)
    }
    for path in planted:
        path.write_bytes(b"x")
    os.utime(lake / "_tmp-fedcba9876543210fedcba9876543210-c-s00004.parquet.inprogress", (day_old, day_old))
    (scratch / "ray" / "session_latest").symlink_to(session)
    deadline = time.monotonic() + 30
    while not (session / "logs" / "agent.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        removed = sweep_leftovers(str(private_tmp / "lake"))
        assert orphan.wait(timeout=10) is not None  # ended: it held the dead session open
    finally:
        orphan.kill()
    assert not session.exists() and not (scratch / "ray" / "session_latest").is_symlink()
    assert {p.name: p.exists() for p in planted} == {p.name: keep for p, keep in planted.items()}
    assert session in removed and len(removed) == 1 + sum(not keep for keep in planted.values())
