"""``videolake run`` as a user runs it, checked from the outside: what it listens on, what it leaves
behind after it ends or is killed, and where planted secrets turn up (nowhere).

Each run gets its own TMPDIR (short: Ray's socket paths must fit in 107 bytes) and PREFECT_HOME,
and starts its own temporary Prefect server and local Ray, as on a fresh machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from videolake.pipeline.scratch import process_tag
from tests.conftest import videolake_bin
from tests.test_cli import FAST_FLAGS

pytestmark = pytest.mark.slow

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
PLANTED = {
    "AWS_SECRET_ACCESS_KEY": "planted-env-secret-1",
    "AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct;AccountKey=cGxhbnRlZC1hY2NvdW50LWtleQ+/x==;EndpointSuffix=x",
    "AWS_SESSION_TOKEN": "planted-session-token-2",
}
OPTIONS = {"secret": "planted-option-secret-3", "client_kwargs": {"headers": {"Authorization": "Bearer planted.bearer_4"}}}


@pytest.fixture
def machine(tmp_path):
    """A fresh machine's environment: no Prefect API or Ray configured, a TMPDIR and a PREFECT_HOME of its own."""
    tmp = Path(tempfile.mkdtemp(prefix="vl", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PREFECT_", "AWS_", "AZURE_"))}
    env.update(TMPDIR=str(tmp), PREFECT_HOME=str(tmp_path / "prefect-home"), PYTHONUNBUFFERED="1")
    yield env, tmp / f"videolake-{os.getuid()}"
    shutil.rmtree(tmp, ignore_errors=True)


def _tree(root: psutil.Process) -> list[psutil.Process]:
    with_root = [root]
    try:
        with_root += root.children(recursive=True)
    except psutil.Error:
        pass
    return with_root


def _listening(processes: list[psutil.Process]) -> dict[tuple[str, int], str]:
    """(address, port) → process name of every listening TCP socket of ``processes``."""
    found = {}
    for process in processes:
        try:
            name = f"{process.name()} {' '.join(process.cmdline())[:300]}"
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found[(conn.laddr.ip, conn.laddr.port)] = name
        except psutil.Error:
            continue
    return found


def test_a_run_listens_on_loopback_only_leaves_nothing_and_never_shows_a_secret(machine, samples_dir, corpus, tmp_path):
    env, scratch = machine
    env.update(PLANTED, VIDEOLAKE_STORAGE_OPTIONS=json.dumps(OPTIONS))
    secrets = [*PLANTED.values(), "cGxhbnRlZC1hY2NvdW50LWtleQ", OPTIONS["secret"], "planted.bearer_4"]
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(samples_dir / "bikes.mp4", videos)
    shutil.copy(corpus["text"].path, videos)  # a failed video: its error goes into the lake and the logs
    lake = tmp_path / "lake"
    run = subprocess.Popen([videolake_bin(), "--debug", "run", str(videos), "--out", str(lake), *FAST_FLAGS, "--verbose"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root, sockets, seen = psutil.Process(run.pid), {}, set()
    while run.poll() is None:
        processes = _tree(root)
        seen |= {p.pid for p in processes}
        sockets.update(_listening(processes))
        time.sleep(0.2)
    output = run.stdout.read()
    assert run.returncode == 0, output[-3000:]
    assert "videos: 1 ok, 1 failed" in output, output[-3000:]
    kinds = " ".join(sockets.values())
    for part in ("gcs_server", "raylet", "VideoWorker", "prefect"):  # the sampling saw every server
        assert part in kinds, sorted(sockets.items())
    assert {ip for ip, _ in sockets} <= LOOPBACK, sorted(sockets.items())
    # Nothing left: no process of the run, no Ray session folder, no server log, no half-written file.
    assert not [p for p in seen if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert [p.name for p in scratch.rglob("*") if not p.name == "ray"] == []
    assert not list(lake.rglob("_tmp-*"))
    # No planted secret in what was printed, stored in the lake, or sent to Prefect (parameters, logs).
    db = sqlite3.connect(Path(env["PREFECT_HOME"]) / "prefect.db")
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    prefect = repr([db.execute(f'SELECT * FROM "{name}"').fetchall() for name in tables])  # parameters, logs, events, all
    # the flow run's parameters and log lines, the failed video's error among them (no task runs: the lake holds shards)
    assert str(videos) in prefect and "not a readable video container" in prefect
    assert db.execute("SELECT count(*) FROM log").fetchone()[0] > 0
    lake_bytes = b"".join(p.read_bytes() for p in lake.rglob("*") if p.is_file())
    assert b"not a readable video container" in lake_bytes
    for secret in secrets:
        assert secret not in output and secret not in prefect and secret.encode() not in lake_bytes, secret


def test_what_a_run_killed_with_kill_9_leaves_is_gone_after_the_next_start(machine, samples_dir, tmp_path):
    env, scratch = machine
    lake = tmp_path / "lake"
    args = [videolake_bin(), "run", str(samples_dir / "bikes.mp4"), "--out", str(lake), *FAST_FLAGS, "--shard-seconds", "2"]
    run = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = psutil.Process(run.pid)
    deadline = time.monotonic() + 300
    while not any("VideoWorker" in " ".join(p.cmdline()) for p in _safe(_tree(root))) and run.poll() is None:
        assert time.monotonic() < deadline, "the run never started a worker"
        time.sleep(0.2)
    processes = _tree(root)
    run.send_signal(signal.SIGKILL)  # the driver only: no finally block runs
    run.wait()
    time.sleep(5)

    def of_killed_run(name: str) -> bool:  # session_<time>_<pid>, prefect-server-<pid>-<id>.log, _tmp-<host>-<pid>-...
        return name.endswith(f"_{run.pid}") or f"-{run.pid}-" in name

    left = sorted(p.name for p in scratch.rglob("*") if of_killed_run(p.name))
    assert any(name.startswith("session_") for name in left) and any(name.startswith("prefect-server-") for name in left), left
    (lake / "detections").mkdir(parents=True, exist_ok=True)
    host = process_tag().rsplit("-", 1)[0]
    planted = lake / "detections" / f"_tmp-{host}-{run.pid}-0a1b2c3d4e5f-x.parquet.inprogress"
    planted.write_bytes(b"half a file")  # what a writer killed mid-file leaves beside its target

    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not [p for p in scratch.rglob("*") if of_killed_run(p.name)] and not planted.exists()
    assert not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], "processes of the killed run live on"


def _safe(processes: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for process in processes:
        try:
            process.cmdline()
            out.append(process)
        except psutil.Error:
            continue
    return out
