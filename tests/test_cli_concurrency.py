"""Two ``videolake run``s and ``videolake compact``s on one lake at the same time, on disk and in a bucket."""

from __future__ import annotations

import subprocess
import time

import pytest

from videolake.pipeline.lake import Lake
from tests.conftest import videolake_bin
from tests.objectstore import s3_env

pytestmark = pytest.mark.slow

FLAGS = ["--imgsz", "320", "--analysis-fps", "4", "--shard-seconds", "2", "--workers", "1", "--quiet"]
COMPARED = (
    "SELECT count(*) AS n FROM detections",
    "SELECT count(*) AS n FROM tracks",
    "SELECT video_id, status, frames_analyzed, n_detections, n_clips, shards_total FROM videos ORDER BY 1",
    "SELECT video_id, frame_index, track_id, raw_track_id, round(x1, 2) AS x1 FROM all_detections ORDER BY ALL",
    "SELECT video_id, clip_index, track_id, action FROM all_clips ORDER BY ALL",
)
_clean: dict[str, list] = {}


def _answers(lake: str) -> list:
    opened = Lake.open(lake)
    return [opened.sql(sql).to_pylist() for sql in COMPARED]


def _clean_answers(sources: list, env: dict, tmp_path) -> list:
    if "rows" not in _clean:
        run = subprocess.run([videolake_bin(), "run", *map(str, sources), "--out", str(tmp_path / "clean"), *FLAGS],
                             capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr
        _clean["rows"] = _answers(str(tmp_path / "clean"))
    return _clean["rows"]


@pytest.mark.parametrize("where", ["disk", "bucket"])
def test_two_runs_and_compactions_at_once_end_with_the_rows_of_one_clean_run(where, samples_dir, tmp_path, cli_env, request):
    sources = [samples_dir / "bikes.mp4", samples_dir / "carphone_pristine.mp4"]
    env = dict(cli_env)
    if where == "bucket":
        s3, server = request.getfixturevalue("s3"), request.getfixturevalue("s3_server")
        s3.mkdir(f"{s3.prefix}-lake")
        lake = f"s3://{s3.prefix}-lake/lake"
        env.update(s3_env(server.url))
    else:
        lake = str(tmp_path / "lake")
    clean = _clean_answers(sources, cli_env, tmp_path)

    runs = [subprocess.Popen([videolake_bin(), "run", *map(str, sources), "--out", lake, *FLAGS], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    compactions, reads = [], 0
    while any(r.poll() is None for r in runs):
        try:
            opened = Lake.open(lake)
        except Exception:  # noqa: BLE001 - not created yet
            time.sleep(0.2)
            continue
        # A reader in the middle of it all: every video it sees is whole.
        seen = opened.sql("SELECT v.video_id, v.n_detections, count(d.video_id) AS n FROM videos v "
                          "LEFT JOIN detections d USING (video_id) GROUP BY ALL").to_pylist()
        assert all(r["n"] == r["n_detections"] for r in seen), seen
        reads += 1
        compactions.append(subprocess.run([videolake_bin(), "compact", lake], capture_output=True, text=True, env=env,
                                          timeout=300))
    outs = [r.communicate(timeout=60) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [err for _, err in outs]
    assert compactions and all(c.returncode == 0 for c in compactions), [(c.returncode, c.stdout, c.stderr) for c in compactions if c.returncode]
    assert _answers(lake) == clean
    waited = [line for _, err in outs for line in err.splitlines() if line.startswith("waiting:")]
    print(f"\n{where}: 2 runs, {len(compactions)} compactions and {reads} reads at once; the lake equals a clean run's; "
          f"the runs waited {len(waited)} time(s)")
