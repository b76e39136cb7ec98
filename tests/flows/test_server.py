"""``videolake run`` without a configured Prefect API: a temporary server that records the run and goes away."""

import os
import re
import sqlite3
import subprocess
import time

import psutil
import pytest

from videolake.pipeline.query import run_sql
from tests.conftest import videolake_bin
from tests.test_cli import FAST_FLAGS, vl


def _servers_of(prefect_home: str) -> list[psutil.Process]:
    """Live `prefect server start` processes using this PREFECT_HOME."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "server" in (process.info["cmdline"] or []) and process.environ().get("PREFECT_HOME") == prefect_home:
                found.append(process)
        except psutil.Error:
            continue
    return found


def _env_without_servers(home: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PREFECT_"))}
    env.update(PREFECT_HOME=home, PYTHONUNBUFFERED="1")
    return env


@pytest.mark.slow
def test_a_one_off_run_records_its_flow_in_a_temporary_server_and_an_empty_rerun_needs_none(samples_dir, tmp_path):
    home = str(tmp_path / "prefect-home")
    env = _env_without_servers(home)
    lake = tmp_path / "lake"

    first = vl("run", samples_dir / "carphone_pristine.mp4", "--out", lake, *FAST_FLAGS, env=env)
    assert first.returncode == 0, first.stderr
    assert "videos: 1 ok, 0 failed; 1 new, 0 already done" in first.stdout, first.stdout
    run_id = re.search(r"^run (\S+) →", first.stdout, re.M).group(1)
    db = sqlite3.connect(os.path.join(home, "prefect.db"))
    # The server recorded the flow run, finished, its progress artifact at 100 %, its summary, its logs.
    assert db.execute("SELECT id, state_type FROM flow_run").fetchall() == [(run_id, "COMPLETED")]
    artifacts = {key: (kind, data, flow_run_id) for key, kind, data, flow_run_id in
                 db.execute("SELECT key, type, data, flow_run_id FROM artifact").fetchall()}
    assert set(artifacts) == {"videolake-progress", "videolake-summary"}, artifacts
    assert artifacts["videolake-progress"] == ("progress", 100, run_id)
    assert artifacts["videolake-summary"][0] == "table" and artifacts["videolake-summary"][2] == run_id
    logs = [m for (m,) in db.execute("SELECT message FROM log WHERE flow_run_id = ?", (run_id,)).fetchall()]
    assert any("1 to analyse" in m for m in logs), logs
    assert _servers_of(home) == []  # stopped with the run

    again = vl("run", samples_dir / "carphone_pristine.mp4", "--out", lake, *FAST_FLAGS, env=env)
    assert again.returncode == 0, again.stderr
    assert "videos: 0 ok, 0 failed; 0 new, 1 already done" in again.stdout, again.stdout
    # Nothing new: no flow run (no server started), yet the run is recorded in the lake.
    assert db.execute("SELECT count(*) FROM flow_run").fetchone() == (1,)
    runs = run_sql(lake, "SELECT run_id, videos_ok, videos_done_before FROM runs ORDER BY started_at").to_pylist()
    empty_id = re.search(r"^run (\S+) →", again.stdout, re.M).group(1)
    assert runs == [{"run_id": run_id, "videos_ok": 1, "videos_done_before": 0},
                    {"run_id": empty_id, "videos_ok": 0, "videos_done_before": 1}]


@pytest.mark.slow
def test_a_run_killed_with_sigkill_takes_its_temporary_prefect_server_with_it(samples_dir, tmp_path):
    home = str(tmp_path / "prefect-home")
    run = subprocess.Popen([videolake_bin(), "run", samples_dir / "bikes.mp4", "--out", tmp_path / "lake", *FAST_FLAGS],
                           env=_env_without_servers(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (servers := _servers_of(home)):
        assert run.poll() is None, "the run ended before its Prefect server was seen"
        assert time.monotonic() < deadline, "no temporary Prefect server appeared"
        time.sleep(0.2)
    run.kill()  # no finally block runs: only the kernel's parent-death signal can stop the server now
    run.wait()
    servers[0].wait(timeout=30)  # raises psutil.TimeoutExpired while the server lives on
    assert _servers_of(home) == []


_RETENTION_SCRIPT = """
import sqlite3, sys, time
from prefect import flow
from videolake.flows.server import prefect_api_in_background

@flow
def old():
    return 1

@flow
def recent():
    return 2

with prefect_api_in_background() as wait:
    wait()
    old(); recent()
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE flow_run SET start_time = '2020-01-01 00:00:00+00:00', end_time = '2020-01-01 00:00:01+00:00' "
           "WHERE flow_id IN (SELECT id FROM flow WHERE name = 'old')")
db.commit()
with prefect_api_in_background() as wait:  # the next run's server: Prefect's vacuum runs as it starts
    wait()
    deadline = time.monotonic() + 90
    while db.execute("SELECT count(*) FROM flow_run").fetchone()[0] > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
print(sorted(name for (name,) in db.execute("SELECT f.name FROM flow_run r JOIN flow f ON f.id = r.flow_id")), flush=True)
import os; os._exit(0)  # not Prefect's minute of retrying to ship logs to the stopped server
"""


@pytest.mark.slow
def test_the_temporary_server_prunes_flow_runs_past_the_retention_period(tmp_path):
    import subprocess
    import sys

    home = str(tmp_path / "prefect-home")
    out = subprocess.run([sys.executable, "-c", _RETENTION_SCRIPT, os.path.join(home, "prefect.db")],
                         env=_env_without_servers(home), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "['recent']", out.stdout
