"""``videolake render``, ``report``, ``train-actions LABELS`` and ``eval-actions`` as a user runs them."""

import hashlib
import json
import os
import re
import subprocess

import pytest

from videolake.pipeline.decode import probe
from tests.conftest import videolake_bin
from tests.pipeline.test_report import chromium_page_status
from tests.synthetic_lake import CLASS_NAMES, write_synthetic_lake

FAST_FLAGS = ["--imgsz", "320", "--analysis-fps", "4", "--pose", "none", "--quiet"]


def vl(*args, env=None, timeout=600):
    return subprocess.run([videolake_bin(), *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


def _env(prefect_api):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(PREFECT_API_URL=prefect_api, PYTHONUNBUFFERED="1")
    return env


def _json(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def lake(samples_dir, prefect_api, tmp_path_factory):
    """carphone_pristine.mp4 analysed by ``videolake run`` with the default models."""
    out = tmp_path_factory.mktemp("cli-see") / "lake"
    run = vl("run", samples_dir / "carphone_pristine.mp4", "--out", out, *FAST_FLAGS, env=_env(prefect_api))
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-synthetic")
    train = write_synthetic_lake(root / "lake", root / "train.csv", n_tracks=400, seed=21, prefix="train")
    held_out = write_synthetic_lake(root / "lake", root / "held_out.csv", n_tracks=150, seed=22, prefix="heldout")
    return root / "lake", train.path, held_out.path


@pytest.mark.slow
def test_render_and_report_from_a_run(lake, tmp_path, cli_env):
    video_id = _json(vl("query", lake, "SELECT video_id FROM videos", "--format", "json", env=cli_env))[0]["video_id"]
    out = tmp_path / "clip.mp4"
    r = vl("render", lake, "--video", video_id, "--start", "1", "--end", "3", "-o", out, env=cli_env)
    assert r.returncode == 0, r.stderr
    assert re.search(r"wrote .*clip\.mp4: 60 frames 176x144 at 30 fps, 1\.00-2\.97 s, \d+ boxes drawn", r.stdout), r.stdout
    info = probe(out)
    assert (info.width, info.height, info.codec) == (176, 144, "h264") and info.duration_s == pytest.approx(2.0, abs=0.05)

    r = vl("report", lake, "-o", tmp_path / "report", "--keyframes", "2", env=cli_env)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "1 video(s), 4 image(s)" in r.stdout
    status = chromium_page_status(tmp_path / "report" / "index.html", tmp_path)
    assert len(status["images"]) == 4 and all(i["loaded"] for i in status["images"]), status


@pytest.mark.slow
def test_train_on_labels_evaluate_and_run_with_the_new_model_under_its_own_config_hash(lake, synthetic, samples_dir, tmp_path, cli_env):
    synthetic_lake, train_labels, held_out = synthetic
    model = tmp_path / "mine.safetensors"
    r = vl("train-actions", train_labels, "--lake", synthetic_lake, "-o", model, "--epochs", "15", "--seed", "3", env=cli_env)
    assert r.returncode == 0, r.stderr
    classes = sorted(CLASS_NAMES.values())
    assert f"classes {', '.join(classes)}; wrote {model}" in r.stdout
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["classes"] == classes and card["data"]["config_hash"] and model.with_suffix(".confusion.png").is_file()

    r = vl("eval-actions", held_out, "--lake", synthetic_lake, "--actions", model, "--json", tmp_path / "eval.json", env=cli_env)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^class\s+precision\s+recall\s+support$", r.stdout, re.M)
    for name in classes:
        assert re.search(rf"^{name}\s+[0-9.]+\s+[0-9.]+\s+\d+$", r.stdout, re.M), r.stdout
    assert "confusion (rows true, columns written): " + " ".join(classes) + " unknown no row" in r.stdout
    assert re.search(r"majority baseline \(\w+\): 0\.\d+", r.stdout) and re.search(r"unknown \d+\.\d%", r.stdout)
    accuracy = float(re.search(r"labelled clips .*; accuracy ([0-9.]+)", r.stdout).group(1))
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["accuracy_all"] == pytest.approx(accuracy, abs=1e-3)
    assert report["accuracy_answered"] > 0.4  # six balanced classes: a majority guess scores about 0.17 (test_labels checks the margin)
    # The default model does not know the user's class names: nothing scored, what it said is reported.
    r = vl("eval-actions", held_out, "--lake", synthetic_lake, env=cli_env)
    assert r.returncode == 0, r.stderr
    assert all(f"not scored ('{c}' is not a model class)" in r.stdout for c in classes), r.stdout

    before = _json(vl("query", lake, "SELECT DISTINCT config_hash FROM videos", "--format", "json", env=cli_env))
    run = vl("run", samples_dir / "carphone_pristine.mp4", "--out", lake, "--actions", model, *FAST_FLAGS, env=cli_env)
    assert run.returncode == 0, run.stderr
    hashes = _json(vl("query", lake, "SELECT config_hash, action_model_sha256 FROM runs ORDER BY finished_at", "--format", "json",
                      env=cli_env))
    assert len(hashes) == 2 and hashes[0]["config_hash"] == before[0]["config_hash"] != hashes[1]["config_hash"]
    assert hashes[1]["action_model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    new = hashes[1]["config_hash"]
    per_config = _json(vl("query", lake, "SELECT config_hash, count(*) AS n, list(DISTINCT action ORDER BY action) AS actions "
                                         "FROM all_clips GROUP BY 1", "--format", "json", env=cli_env))
    by_hash = {r["config_hash"]: r for r in per_config}
    assert set(by_hash) == {before[0]["config_hash"], new}
    assert set(by_hash[new]["actions"]) <= set(classes) | {"unknown"}  # the user's classes, kept apart from the default's
    assert set(by_hash[before[0]["config_hash"]]["actions"]) <= {"standing", "walking", "running", "sitting", "falling", "lying", "unknown"}
    assert by_hash[new]["n"] == by_hash[before[0]["config_hash"]]["n"]  # same detector and tracker: the same clips


@pytest.mark.parametrize("args, code, message", [
    (["train-actions", "-o", "{tmp}/m.safetensors"], 2, "give LABELS and --lake LAKE"),
    (["train-actions", "{tmp}/labels.csv", "--lake", "{lake}", "-o", "{tmp}/m.safetensors"], 2,
     "bad rows (rows count from 1 after the header): unknown video 'nope-1' (not in the lake): 2; "
     "inverted time range (t_end_s <= t_start_s): 3"),
    (["train-actions", "{tmp}/missing.csv", "--lake", "{lake}", "-o", "{tmp}/m.safetensors"], 2, "labels file not found"),
    (["render", "{lake}", "--video", "nope", "-o", "{tmp}/x.mp4"], 2, "is not in the lake"),
    (["report", "{tmp}/nolake", "-o", "{tmp}/r"], 2, "is not a videolake lake"),
    (["train-actions", "{tmp}/labels.csv", "--lake", "{tmp}", "-o", "{tmp}/m.safetensors"], 2, "is not a videolake lake"),
])
def test_bad_arguments_exit_non_zero_with_one_line(synthetic, tmp_path, cli_env, args, code, message):
    from videolake.pipeline.models import default_actions_path

    synthetic_lake, train_labels, held_out = synthetic
    header, first = train_labels.read_text().splitlines()[:2]
    video = first.split(",")[0]
    (tmp_path / "labels.csv").write_text(f"{header}\n{first}\nnope-1,0,2,idle,1\n{video},5,4,idle,1\n")
    (tmp_path / "held_out.csv").write_text(held_out.read_text())
    values = dict(tmp=tmp_path, lake=synthetic_lake, default_model=default_actions_path())
    result = vl(*[a.format(**values) for a in args], env=cli_env, timeout=300)
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
