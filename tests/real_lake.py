"""A real lake from the sample videos, built once per test session through the library.

The real default models (detector, pose, actions) analyse ``carphone_pristine.mp4`` and ``bikes.mp4`` with the fast
test settings with pose (``FAST_POSE``); the videos and runs rows are written as a run writes them. No
Ray and no Prefect: tests of the library get a lake in seconds.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from videolake.pipeline.actions import ActionModel
from videolake.pipeline.analyze import ShardJob, VideoAnalyzer, load_pose
from videolake.pipeline.config import RunConfig
from videolake.pipeline.decode import probe
from videolake.pipeline.detect import Detector
from videolake.pipeline.lake import Lake
from videolake.pipeline.models import resolve_actions, resolve_detector, resolve_pose
from videolake.pipeline.shards import plan_shards
from videolake.pipeline.sources import discover
from videolake.pipeline.stitch import finalize_video
from tests.conftest import FAST_POSE

SAMPLE_NAMES = ("carphone_pristine.mp4", "bikes.mp4")
RUN_ID = "real-lake-run"


@dataclass(frozen=True)
class RealLake:
    path: Path
    config_hash: str
    video_ids: dict[str, str]  # sample file name -> video_id
    uris: dict[str, str]


_built: dict[Path, RealLake] = {}


def real_lake(samples_dir: Path) -> RealLake:
    """The session's sample lake (built on first use)."""
    if samples_dir not in _built:
        _built[samples_dir] = _build(samples_dir, Path(tempfile.mkdtemp(prefix="videolake-real-lake-")))
    return _built[samples_dir]


def _build(samples_dir: Path, lake: Path) -> RealLake:
    cfg = RunConfig(**FAST_POSE, device="cpu")
    detector_info, actions_info, pose_info = resolve_detector("default"), resolve_actions("default"), resolve_pose("default")
    config_hash = cfg.config_hash(detector_info.sha256, actions_info.sha256, pose_info.sha256)
    detector = Detector(detector_info.path, imgsz=cfg.imgsz, conf=cfg.conf, device="cpu")
    analyzer = VideoAnalyzer(cfg, detector, ActionModel.load(actions_info.path), load_pose(cfg, detector))
    started = datetime.now(timezone.utc)
    opened = Lake.open_or_create(lake)
    video_ids, uris = {}, {}
    for name in SAMPLE_NAMES:
        (source,) = discover([samples_dir / name])
        info = probe(source.uri)
        (shard,) = plan_shards(info, 0, cfg.clip_seconds)
        job = ShardJob(source.video_id, source.content_key, info, shard, opened.url, RUN_ID, config_hash)
        result = analyzer.analyze(job)
        assert result.status == "ok", result.error
        outcome = finalize_video(opened, config_hash, RUN_ID, source, info, [shard], {}, result.wall_s)
        assert outcome.status == "ok"
        video_ids[name], uris[name] = source.video_id, source.uri
    opened.commit_run({
        "run_id": RUN_ID, "started_at": started, "finished_at": datetime.now(timezone.utc),
        "config": json.dumps(cfg.to_dict(), sort_keys=True), "config_hash": config_hash,
        "detector": "default", "detector_sha256": detector_info.sha256, "action_model": "default",
        "action_model_sha256": actions_info.sha256, "action_classes": list(analyzer.action_model.classes),
        "pose_model": "default", "pose_model_sha256": pose_info.sha256, "features": analyzer.features,
        "videos_ok": len(SAMPLE_NAMES), "videos_failed": 0, "frames_analyzed": 0, "wall_s": 0.0,
    })
    return RealLake(lake, config_hash, video_ids, uris)
