"""The default models on real video, at the default settings: what people would agree with.

Runs the library's ``VideoAnalyzer`` (no Ray, no Prefect) on the real samples and on the
labelled footage of ``bench/actions`` (found through package metadata, installed by ``make``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from videolake.pipeline.actions import ActionModel
from videolake.pipeline.analyze import ShardJob, VideoAnalyzer, load_pose
from videolake.pipeline.config import RunConfig
from videolake.pipeline.decode import probe
from videolake.pipeline.detect import Detector
from videolake.pipeline.models import default_actions_path, resolve_actions, resolve_detector, resolve_pose
from videolake.pipeline.shards import plan_shards
from videolake.pipeline.sources import video_id_for
from tests.media import encode, real_frames

pytestmark = pytest.mark.slow
DEFAULTS = RunConfig(device="cpu")


@pytest.fixture(scope="module")
def analyzer():
    detector = Detector(resolve_detector().path, imgsz=DEFAULTS.imgsz, conf=DEFAULTS.conf, device="cpu")
    return VideoAnalyzer(DEFAULTS, detector, ActionModel.load(resolve_actions().path), load_pose(DEFAULTS, detector))


def _analyse(analyzer: VideoAnalyzer, path: Path, lake: Path) -> tuple[dict, list[dict], list[dict]]:
    """(result, clip rows, detection rows) of the whole video as one shard."""
    info = probe(str(path))
    (shard,) = plan_shards(info, 0, analyzer.config.clip_seconds)
    job = ShardJob(video_id_for(str(path), "c"), "c", info, shard, str(lake), "run", "cfg")
    result = analyzer.analyze(job)
    assert result.status == "ok", result.error
    return result, _staged(job, "clips", result.n_clips), _staged(job, "detections", result.n_detections)


def _staged(job: ShardJob, table: str, n_rows: int) -> list[dict]:
    """The rows a shard staged of ``table``: a table without rows stages no file."""
    if n_rows == 0:
        assert not Path(job.path(table)).exists()
        return []
    rows = pq.read_table(job.path(table)).to_pylist()
    assert len(rows) == n_rows
    return rows


def test_the_rabbit_and_the_car_window_get_no_action_and_the_seated_man_is_never_moving_or_down(analyzer, samples_dir, tmp_path):
    _, bunny_clips, bunny_dets = _analyse(analyzer, samples_dir / "bigbuckbunny.mp4", tmp_path)
    assert bunny_dets, "the detector still fires on the rabbit; the pose evidence must keep it out of the clips"
    assert [c for c in bunny_clips if c["action"] != "unknown"] == []
    assert bunny_clips == [], bunny_clips  # not even unknown: no person there
    result, clips, dets = _analyse(analyzer, samples_dir / "carphone_pristine.mp4", tmp_path)
    heights = {}
    for d in dets:
        heights.setdefault(d["track_id"], []).append(d["y2"] - d["y1"])
    window_tracks = {t for t, h in heights.items() if t is not None and np.median(h) < 40}  # the patch on the rear window
    assert window_tracks, heights
    assert not [c for c in clips if c["track_id"] in window_tracks]
    man = [c for c in clips if c["track_id"] not in window_tracks]
    assert man, "the seated man gets a row (unknown or sitting)"
    assert {c["action"] for c in man} <= {"sitting", "standing", "unknown"}, man
    assert result.features == "pose"


def test_a_video_without_people_gives_no_action_rows_and_no_error(analyzer, tmp_path):
    scenery = [f[:, 760:1240] for f in real_frames("bigbuckbunny.mp4", limit=50)]  # grass, rocks and sky: no rabbit
    video = encode(tmp_path / "scenery.mp4", scenery, fps=25)
    result, clips, _ = _analyse(analyzer, video.path, tmp_path)
    assert result.status == "ok" and result.frames_analyzed > 10
    assert clips == []


def test_without_a_pose_model_actions_fall_back_to_box_features(samples_dir, tmp_path):
    cfg = RunConfig(device="cpu", pose="none", imgsz=320, analysis_fps=4)
    detector = Detector(resolve_detector().path, imgsz=cfg.imgsz, conf=cfg.conf, device="cpu")
    assert load_pose(cfg, detector) is None
    box_only = VideoAnalyzer(cfg, detector, ActionModel.load(default_actions_path()), None)
    result, clips, dets = _analyse(box_only, samples_dir / "bikes.mp4", tmp_path)
    assert result.features == "box" and box_only.features == "box"
    assert dets and all(d["kp_x"] is None and d["pose_confidence"] is None for d in dets)
    assert clips and all(c["n_pose_frames"] is None for c in clips)


def test_a_pose_model_as_the_detector_needs_no_second_pose_model(samples_dir, tmp_path):
    cfg = RunConfig(device="cpu", detector=resolve_pose().path, imgsz=320, analysis_fps=4)
    detector = Detector(cfg.detector, imgsz=cfg.imgsz, conf=cfg.conf, device="cpu")
    assert load_pose(cfg, detector) is None
    analyzer = VideoAnalyzer(cfg, detector, ActionModel.load(default_actions_path()), None)
    result, _, dets = _analyse(analyzer, samples_dir / "carphone_pristine.mp4", tmp_path)
    assert result.features == "pose" and any(d["kp_x"] is not None for d in dets)


def test_the_shipped_model_answers_the_labelled_real_footage_as_its_card_says(tmp_path):
    """Regression guard, in-sample: the default pipeline on the labelled footage (vtest.avi included, from Debian's
    opencv-doc: ``make install`` puts it in the venv) gives back what the model
    was trained on. A change that makes inference compute other features than training did, or that lets
    a non-person or an action nobody labelled through, fails here. (How the model does on footage it has
    not seen is the card's leave-one-video-out figure, below target: see the card.)"""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    work = tmp_path / "actions"
    done = subprocess.run([sys.executable, str(root / "bench" / "actions.py"), "--workdir", str(work)],
                          capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads(default_actions_path().with_suffix(".json").read_text())
    measured = json.loads((work / "report.json").read_text())
    assert measured["person_clips"] == card["real_video"]["person_clips"]
    # Measured when this model was trained (PIPELINE_VERSION 5): precision 1.0 standing, 0.99 walking, 1.0 sitting,
    # recall 0.74 standing, 0.90 walking; 83 % of person clips answered; 93 of 93 non-people without a row.
    for c in ("standing", "walking"):
        assert measured["per_class"][c]["precision"] >= 0.95 and measured["per_class"][c]["recall"] >= 0.5, measured
    assert measured["accuracy_answered"] >= 0.95 and measured["accuracy_all"] > measured["majority_accuracy"]
    assert measured["absent_action_rate"] <= 0.02
    assert measured["none_given_action"] == 0
    # Every labelled person has a track of their own (0 of 295 when measured): a tracker change that merges people or
    # loses them (ByteTrack's fuse_score off: 17 lost) fails here, not only in the no-row rate.
    assert measured["untracked"] <= 0.02 * measured["person_clips"], measured
