"""The ``videolake`` command as a user runs it (subprocesses, real Prefect API, real Ray)."""

import json
import re
import subprocess

import pytest

from tests.conftest import videolake_bin

FAST_FLAGS = ["--imgsz", "320", "--analysis-fps", "4", "--quiet"]


def vl(*args, env=None, timeout=600):
    return subprocess.run([videolake_bin(), *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_run_then_query_gives_the_numbers_the_summary_printed(samples_dir, tmp_path, cli_env):
    lake = tmp_path / "lake"
    run = vl("run", samples_dir / "carphone_pristine.mp4", samples_dir / "bigbuckbunny.mp4", "--out", lake,
             *FAST_FLAGS, env=cli_env)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert re.search(r"videos: 2 ok, 0 failed", out), out
    frames = int(re.search(r"frames analysed: (\d+)", out).group(1))
    tracks = int(re.search(r"tracks: (\d+)", out).group(1))
    clips_line = re.search(r"clips: (.*)", out).group(1)
    clips = {a: int(n) for a, n in re.findall(r"(\w+) (\d+)", clips_line)}
    assert "Traceback" not in run.stderr

    q = vl("query", lake, "SELECT sum(frames_analyzed) AS f FROM videos", "--format", "json", env=cli_env)
    assert json.loads(q.stdout) == [{"f": frames}]
    q = vl("query", lake, "SELECT action, count(*) AS n FROM clips GROUP BY 1", "--format", "json", env=cli_env)
    assert {r["action"]: r["n"] for r in json.loads(q.stdout)} == clips
    q = vl("query", lake, "SELECT count(*) AS n FROM tracks", "--format", "csv", env=cli_env)
    assert q.stdout == f"n\n{tracks}\n"  # plain newlines, so shell pipelines get clean values
    listing = vl("query", lake, env=cli_env)
    assert re.search(r"^clips \(\d+ rows\): video_id VARCHAR", listing.stdout, re.M), listing.stdout
    table = vl("query", lake, "SELECT action, count(*) AS n FROM clips GROUP BY 1 ORDER BY 1", env=cli_env)
    assert table.returncode == 0 and "action" in table.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["run", "{tmp}/missing", "--out", "{tmp}/lake"], 1, "source not found"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--imgsz", "100"], 2, "imgsz must be a multiple of 32"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--tracker", "sort"], 2, "tracker must be one of"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--max-workers", "0"], 2, "max_workers must be >= 1"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--decoders", "0"], 2, "decoders must be in [1, 64]"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/file/lake"], 1, "is not writable"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--detector", "{tmp}/nope.pt"], 1, "detector weights not found"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--actions", "{tmp}/file"], 1, "must be a .safetensors file"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--config", "{tmp}/missing.yaml"], 2, "config file not found"),
        (["query", "{tmp}/nolake", "SELECT 1"], 1, "lake not found"),
        (["query", "{tmp}", "SELECT 1", "--format", "xml"], 2, "--format must be"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line_and_no_traceback(samples_dir, tmp_path, cli_env, args, code, message):
    (tmp_path / "file").write_text("x")
    result = vl(*[a.format(tmp=tmp_path, samples=samples_dir) for a in args], env=cli_env, timeout=180)
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


def test_samples_and_models_commands(tmp_path):
    out = vl("samples", tmp_path / "s")
    assert out.returncode == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"]
    models = vl("models")
    assert models.returncode == 0, models.stderr
    assert "classes: Normal, Fall" in models.stdout
    assert "classes: standing, walking, running, falling, lying" in models.stdout
    assert re.search(r"sha256: [0-9a-f]{64}", models.stdout)


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_gives_exactly_the_rows_of_a_clean_run(samples_dir, tmp_path, cli_env):
    import os
    import signal
    import time

    args = [samples_dir / "bikes.mp4", samples_dir / "carphone_pristine.mp4", *FAST_FLAGS, "--shard-seconds", "2"]
    clean = vl("run", *args, "--out", tmp_path / "clean", env=cli_env)
    assert clean.returncode == 0, clean.stderr

    lake = tmp_path / "crashed"
    proc = subprocess.Popen([videolake_bin(), "run", *map(str, args), "--out", str(lake)], env=cli_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while len(list(lake.glob("ledger/*/*/*.parquet"))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    committed = len(list(lake.glob("ledger/*/*/*.parquet")))
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started, mid-run
    proc.wait()
    assert 3 <= committed < 8, "the kill should land after some shards and before the end"

    resumed = vl("run", *[a for a in args if a != "--quiet"], "--out", lake, env=cli_env)  # with its progress
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"shards: \d+ processed, 0 failed, [1-9]\d* already done, 8 in all", resumed.stdout), resumed.stdout
    # Its progress counted only the shards left: their frames, not the whole videos' (the clean run's).
    done, total = map(int, re.findall(r"videos 2/2  frames (\d+)/(\d+)", resumed.stderr)[-1])
    clean_frames = int(re.search(r"frames analysed: (\d+)", clean.stdout).group(1))
    assert 0 < done < clean_frames and abs(total - done) <= 0.1 * clean_frames, (done, total, clean_frames)

    def table(lake_dir, sql):
        out = vl("query", lake_dir, sql, "--format", "json", env=cli_env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    for sql in (
        "SELECT count(*) AS n FROM detections",
        "SELECT count(*) AS n FROM clips",
        "SELECT count(*) AS n FROM tracks",
        "SELECT video_id, status, frames_analyzed, n_detections, n_clips FROM videos ORDER BY 1",
        "SELECT video_id, frame_index, track_id, round(x1, 2) AS x1 FROM detections ORDER BY ALL",
        "SELECT video_id, clip_index, track_id, action FROM clips ORDER BY ALL",
    ):
        assert table(lake, sql) == table(tmp_path / "clean", sql), sql
    dupes = table(lake, "SELECT count(*) - count(DISTINCT (video_id, frame_index, x1, y1, x2, y2)) AS d FROM all_detections")
    assert dupes == [{"d": 0}]
    counts = {t: table(lake, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in ("detections", "clips", "tracks")}
    print(f"resume: killed after {committed}/8 shards committed; rerun: {resumed.stdout.splitlines()[2]}; "
          f"lake equals the clean run's: {counts}")
