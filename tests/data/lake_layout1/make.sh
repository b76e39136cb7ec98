#!/bin/bash
# How lake/ and expected.json were made: a lake of videolake's layout 1 (Parquet folders, track_map,
# compaction manifests), written by that layout's own code (commit 1b684db, the last before the Delta
# lake), plus what that code's `videolake query` answered on it. Run with VL and PY pointing at a
# videolake installed from `git archive 1b684db` (here a copy of .venv with it pip-installed).
# The uris inside point at /tmp/videolake-legacy-samples, which tests/pipeline/test_migrate.py
# recreates with the same bytes and mtimes.
set -euo pipefail
VL=${VL:-/tmp/legacy-venv/bin/videolake}
PY=${PY:-/tmp/legacy-venv/bin/python}
D=/tmp/videolake-legacy-samples
L=/tmp/legacy-build/lake
rm -rf $D $L
mkdir -p $D
$VL samples $D
: > $D/broken.mp4
export PREFECT_HOME=/tmp/legacy-build/prefect
$VL run $D --out $L --imgsz 320 --analysis-fps 4 --shard-seconds 4 --workers 1 -q
$VL run $D/carphone_pristine.mp4 --out $L --imgsz 256 --analysis-fps 4 --shard-seconds 4 --workers 1 -q
$VL compact $L
# A third config whose files stay per shard; its bigbuckbunny is left as a run killed after the
# video's last shard committed and before its videos row was written leaves it.
$VL run $D/bikes.mp4 $D/bigbuckbunny.mp4 --out $L --imgsz 288 --analysis-fps 4 --shard-seconds 4 --workers 1 -q
H3=$(ls $L/videos | grep -v -e e861b2cea7a95014 -e ef1d9be5b2979f4d | sed 's/config_hash=//')
rm -r $L/videos/config_hash=$H3/bigbuckbunny-* $L/track_map/config_hash=$H3/bigbuckbunny-*
echo "third config $H3"
$PY - <<'PY'
import json, os
from pathlib import Path
from videolake.pipeline.query import run_sql
D = "/tmp/videolake-legacy-samples"; L = "/tmp/legacy-build/lake"
mtimes = {p.name: p.stat().st_mtime_ns for p in Path(D).iterdir()}
q = lambda s: run_sql(L, s).to_pylist()
expect = {
  "mtime_ns": mtimes,
  "counts": {v: q(f"SELECT count(*) AS n FROM {v}")[0]["n"] for v in
             ("detections", "clips", "videos", "all_detections", "all_clips", "all_videos", "runs", "shards", "tracks", "failed")},
  "detections": q("SELECT video_id, config_hash, frame_index, track_id, class_id, round(x1, 2) AS x1 FROM all_detections ORDER BY ALL"),
  "tracked": q("SELECT d.video_id, d.config_hash, d.frame_index, coalesce(m.track_id, d.track_id) AS track_id, round(d.x1, 2) AS x1 FROM all_detections d LEFT JOIN track_map m ON m.video_id = d.video_id AND m.config_hash = d.config_hash AND m.raw_track_id = d.track_id ORDER BY ALL"),
  "clips": q("SELECT video_id, config_hash, clip_index, track_id, action FROM clips ORDER BY ALL"),
  "videos": q("SELECT video_id, config_hash, uri, status, error_kind, n_detections, n_tracks, n_clips FROM all_videos ORDER BY ALL"),
  "ledger": q("SELECT video_id, config_hash, shard_index FROM ledger ORDER BY ALL"),
  "runs": q("SELECT run_id, config_hash, videos_ok, videos_failed FROM runs ORDER BY ALL"),
  "shards": q("SELECT run_id, video_id, shard_index, status FROM shards ORDER BY ALL"),
}
Path("/tmp/legacy-build/expected.json").write_text(json.dumps(expect, indent=1, default=str))
print({k: len(v) for k, v in expect.items()})
PY
du -sh $L; find $L -type f | wc -l
