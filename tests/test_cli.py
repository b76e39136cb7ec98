"""The ``videolake`` command as a user runs it (subprocesses, real Prefect API, real Ray)."""

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import videolake_bin

FAST_FLAGS = ["--imgsz", "320", "--analysis-fps", "4", "--pose", "none", "--quiet"]


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
    detected, analysed = map(int, re.search(r"detector: (\d+) of the (\d+) frames analysed now", out).groups())
    assert analysed == frames and 0 < detected <= frames
    assert "Traceback" not in run.stderr

    q = vl("query", lake, "SELECT sum(frames_analyzed) AS f FROM videos", "--format", "json", env=cli_env)
    assert json.loads(q.stdout) == [{"f": frames}]
    q = vl("query", lake, "SELECT action, count(*) AS n FROM clips GROUP BY 1", "--format", "json", env=cli_env)
    assert {r["action"]: r["n"] for r in json.loads(q.stdout)} == clips
    q = vl("query", lake, "SELECT frames_detected AS d, round(detector_fraction, 6) AS f FROM runs", "--format", "json", env=cli_env)
    assert json.loads(q.stdout) == [{"d": detected, "f": round(detected / frames, 6)}]
    q = vl("query", lake, "SELECT count(*) FILTER (WHERE NOT carried) AS n FROM (SELECT DISTINCT video_id, frame_index, carried "
           "FROM detections)", "--format", "json", env=cli_env)
    assert json.loads(q.stdout)[0]["n"] <= detected  # frames with boxes the detector saw
    q = vl("query", lake, "SELECT count(*) AS n FROM tracks", "--format", "csv", env=cli_env)
    assert q.stdout == f"n\n{tracks}\n"  # plain newlines, so shell pipelines get clean values
    listing = vl("query", lake, env=cli_env)
    assert re.search(r"^clips \(\d+ rows\): video_id VARCHAR", listing.stdout, re.M), listing.stdout
    table = vl("query", lake, "SELECT action, count(*) AS n FROM clips GROUP BY 1 ORDER BY 1", env=cli_env)
    assert table.returncode == 0 and "action" in table.stdout

    # The archive moves: nothing is analysed again (no Prefect, no Ray) and the new paths are recorded.
    moved = tmp_path / "archive" / "cam7"
    moved.mkdir(parents=True)
    for name in ("carphone_pristine.mp4", "bigbuckbunny.mp4"):
        (moved / name).write_bytes((samples_dir / name).read_bytes())
    again = vl("run", moved, "--out", lake, *FAST_FLAGS, env=cli_env)
    assert again.returncode == 0, again.stderr
    assert "videos: 0 ok, 0 failed; 0 new, 2 already done (2 at a new path)" in again.stdout, again.stdout
    q = vl("query", lake, "SELECT uri, camera_id FROM videos ORDER BY 1", "--format", "json", env=cli_env)
    assert [r["uri"] for r in json.loads(q.stdout)] == [str(moved / "bigbuckbunny.mp4"), str(moved / "carphone_pristine.mp4")]
    assert {r["camera_id"] for r in json.loads(q.stdout)} == {samples_dir.name}  # the camera of the first analysis stays
    q = vl("query", lake, "SELECT count(*) AS n FROM runs", "--format", "json", env=cli_env)
    assert json.loads(q.stdout) == [{"n": 2}]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["run", "{tmp}/missing", "--out", "{tmp}/lake"], 1, "source not found"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--imgsz", "100"], 2, "imgsz must be a multiple of 32"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--tracker", "sort"], 2, "tracker must be one of"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--max-workers", "0"], 2, "max_workers must be >= 1"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--decoders", "0"], 2, "decoders must be in [1, 64]"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--motion-gate", "maybe"], 2, "motion_gate must be one of auto, on, off"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/file/lake"], 1, "is not writable"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--detector", "{tmp}/nope.pt"], 1, "detector weights not found"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--actions", "{tmp}/file"], 1, "must be a .safetensors file"),
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--config", "{tmp}/missing.yaml"], 2, "config file not found"),
        (["query", "{tmp}/nolake", "SELECT 1"], 2, "is not a videolake lake"),
        (["query", "{tmp}", "SELECT 1"], 2, "is not a videolake lake"),
        (["report", "{tmp}", "--out", "{tmp}/report"], 2, "is not a videolake lake"),
        (["render", "{tmp}", "--video", "v", "--out", "{tmp}/x.mp4"], 2, "is not a videolake lake"),
        (["compact", "{tmp}"], 2, "is not a videolake lake"),
        (["migrate", "{tmp}"], 2, "is not a videolake lake"),
        (["query", "{tmp}", "SELECT 1", "--format", "xml"], 2, "--format must be"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line_and_no_traceback(samples_dir, tmp_path, cli_env, args, code, message):
    (tmp_path / "file").write_text("x")
    result = vl(*[a.format(tmp=tmp_path, samples=samples_dir) for a in args], env=cli_env, timeout=180)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert not (tmp_path / "_videolake.json").exists() and not (tmp_path / "nolake").exists()  # only `run` makes a lake
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


COMMANDS = ["run", "serve", "query", "samples", "compact", "migrate", "models", "train-actions", "render", "report", "eval-actions"]


@pytest.mark.parametrize("first", ["videolake.commands_see", "videolake.cli", "videolake._app"])
def test_the_cli_modules_import_in_any_order_without_a_cycle(first):
    import ast
    from pathlib import Path

    import videolake

    for name in ("_app", "commands_see"):  # the app's module and the commands added to it never import videolake.cli
        tree = ast.parse((Path(videolake.__file__).parent / f"{name}.py").read_text())
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert "videolake.cli" not in imported, name
    code = f"import {first}, typer.main; from videolake.cli import app; print(*typer.main.get_command(app).commands)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and sorted(out.stdout.split()) == sorted(COMMANDS), out.stderr
    main = subprocess.run([sys.executable, "-m", "videolake", "--help"], capture_output=True, text=True, timeout=120)
    assert main.returncode == 0 and all(command in main.stdout for command in COMMANDS), main.stderr


def test_samples_and_models_commands(tmp_path):
    out = vl("samples", tmp_path / "s")
    assert out.returncode == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"]
    models = vl("models")
    assert models.returncode == 0, models.stderr
    assert "classes: Normal, Fall" in models.stdout
    assert "classes: standing, walking, running, sitting, lying, falling" in models.stdout
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
    staged = "_staging/ledger/*/*/*.parquet"
    while len(list(lake.glob(staged))) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    committed = len(list(lake.glob(staged)))
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


def test_credentials_in_urls_are_refused_and_never_printed_stored_or_sent_to_prefect(samples_dir, tmp_path, cli_env):
    from prefect.client.orchestration import get_client

    secret, sas = "planted-url-password-3", "planted%2Bsas%2Fsig5"
    lake = tmp_path / "lake"
    cases = [
        ["--debug", "run", f"https://cam-user:{secret}@127.0.0.1:9/cam1.mp4", "--out", lake],
        ["--debug", "run", samples_dir / "bikes.mp4", "--out", f"s3://AKIAKEY:{secret}@lake-bucket/lake"],
        ["--debug", "serve", f"https://acct.blob.core.windows.net/cams/?sv=2022&sig={sas}", "--out", lake, "--interval", "60"],
    ]
    for args in cases:
        result = vl(*args, env=cli_env, timeout=180)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "must not carry credentials" in output
        assert secret not in output and sas not in output
    assert not lake.exists()
    with get_client(sync_client=True) as client:
        stored = repr([r.parameters for r in client.read_flow_runs()]) + repr([d.parameters for d in client.read_deployments()])
    assert secret not in stored and sas not in stored


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["run", "{samples}/bikes.mp4", "--out", "{tmp}/lake", "--config", "{tmp}/bad.yaml"], 2,
         "config file {tmp}/bad.yaml is not valid YAML at line 2, column 6: mapping values are not allowed here"),
        (["serve", "{samples}", "--out", "{tmp}/lake", "--cron", "61 * * * *"], 2, 'Invalid cron string: "61 * * * *"'),
        (["serve", "{samples}", "--out", "{tmp}/lake", "--cron", "0 * * * *", "--timezone", "Mars/Olympus"], 2,
         "--timezone must be an IANA time zone"),
        (["serve", "{samples}", "--out", "{tmp}/lake", "--interval", "0"], 2, "--interval must be > 0 seconds"),
        (["query", "{tmp}/corrupt", "SELECT count(*) FROM detections"], 1,
         "cannot read the lake {tmp}/corrupt: table detections: Could not open Parquet input source 'config_hash=h/"),
        (["query", "{tmp}/corrupt"], 1, "cannot read the lake {tmp}/corrupt"),
    ],
)
def test_errors_are_one_line_with_the_documented_exit_code(samples_dir, tmp_path, cli_env, args, code, message):
    from tests.synthetic_lake import write_sharded_video

    (tmp_path / "bad.yaml").write_text("imgsz: 320\n  bad: [\n")
    write_sharded_video(str(tmp_path / "corrupt"), "a", n_shards=2)
    damaged = sorted((tmp_path / "corrupt" / "detections").rglob("*.parquet"))[0]
    damaged.write_bytes(damaged.read_bytes()[:-12])  # a file cut short: no Parquet footer
    result = vl(*[a.format(tmp=tmp_path, samples=samples_dir) for a in args], env=cli_env, timeout=180)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.strip().splitlines() == [f"error: {message.format(tmp=tmp_path)}"] or (
        len(result.stderr.strip().splitlines()) == 1 and message.format(tmp=tmp_path) in result.stderr), result.stderr


# Optional values whose absence turns something off or asks for another option: no default to show.
NO_DEFAULT = {("run", "config"), ("serve", "config"), ("serve", "cron"), ("serve", "interval"), ("query", "sql"),
              ("train-actions", "labels"), ("train-actions", "lake"), ("eval-actions", "json_out")}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_default(command):
    import click
    import typer.main

    from videolake.cli import app
    from videolake.pipeline.config import RunConfig

    printed = vl(command, "--help")  # the console script's own output: no markup may swallow a "[default: ...]"
    assert printed.returncode == 0, printed.stderr
    printed = " ".join(printed.stdout.split())
    group = typer.main.get_command(app)
    cmd = group.commands[command]
    ctx = click.Context(cmd, info_name=command, parent=click.Context(group, info_name="videolake"))
    for param in cmd.params:
        if param.required or getattr(param, "is_flag", False) or (command, param.name) in NO_DEFAULT:
            continue
        text = " ".join(param.get_help_record(ctx)[1].split())
        assert text.count("[default: ") == 1 and text in printed, (param.name, text)
        shown = text.split("[default: ")[1].split("]")[0]
        default = getattr(RunConfig(), param.name, None) if command == "run" else None
        if isinstance(default, (int, float)):  # what run's help says is what a run uses
            assert float(shown) == default, (param.name, shown, default)
        elif isinstance(default, str) and default != "default":
            assert shown == default, (param.name, shown, default)
