"""One video end to end through the library, with the real default models."""

import pyarrow.parquet as pq
import pytest

from videolake.pipeline.actions import ActionModel
from videolake.pipeline.analyze import ShardJob, VideoAnalyzer, load_pose, prefetch
from videolake.pipeline.config import RunConfig
from videolake.pipeline.decode import probe
from videolake.pipeline.detect import Detector
from videolake.pipeline.shards import Shard, plan_shards
from videolake.pipeline.models import default_actions_path, default_detector_path
from videolake.pipeline.sources import video_id_for
from tests.conftest import FAST_POSE


@pytest.fixture(scope="module")
def analyzer():
    cfg = RunConfig(**FAST_POSE)
    detector = Detector(str(default_detector_path()), imgsz=cfg.imgsz, conf=cfg.conf, device="cpu")
    return VideoAnalyzer(cfg, detector, ActionModel.load(default_actions_path()), load_pose(cfg, detector))


WHOLE = Shard(0, 0.0, float("inf"), 0.0, 0, 0.0)


def _job(path, lake, shard=WHOLE):
    return ShardJob(video_id_for(str(path), "ck"), "ck", probe(path), shard, str(lake), "run-1", "cfg1")


def test_carphone_gives_tracked_detections_and_one_clip_row_per_track_and_window(analyzer, samples_dir, tmp_path):
    job = _job(samples_dir / "carphone_pristine.mp4", tmp_path)
    seen = []
    result = analyzer.analyze(job, progress=seen.append)
    assert result.status == "ok", result.error
    assert result.frames_analyzed == sum(seen) == 16  # 4.0 s at 4 fps
    dets = pq.read_table(job.path("detections")).to_pylist()
    clips = pq.read_table(job.path("clips")).to_pylist()
    ledger = pq.read_table(job.path("ledger")).to_pylist()
    assert len(ledger) == 1 and ledger[0]["n_detections"] == len(dets) and ledger[0]["frames_analyzed"] == 16
    assert len(dets) == result.n_detections >= 12
    assert {d["video_id"] for d in dets} == {job.video_id} and {d["run_id"] for d in dets} == {"run-1"}
    assert all(0 <= d["x1"] < d["x2"] <= 176 and 0 <= d["y1"] < d["y2"] <= 144 for d in dets)
    assert sum(d["track_id"] is not None for d in dets) >= 0.7 * len(dets)
    keys = [(c["clip_index"], c["track_id"]) for c in clips]
    assert len(keys) == len(set(keys)) == result.n_clips >= 2
    assert {c["clip_index"] for c in clips} == {0, 1}  # 2 s windows over a 4 s video
    for c in clips:
        if c["action_probs"] is not None:
            assert len(c["action_probs"]) == 6 and abs(sum(c["action_probs"]) - 1) < 1e-3
            assert c["n_frames"] >= 4 and c["n_pose_frames"] >= 4
    assert sum(result.clips_by_action.values()) == len(clips)


@pytest.mark.parametrize("name", ["zero_bytes", "text", "audio_only"])
def test_bad_videos_come_back_failed_with_the_reason_and_write_nothing(analyzer, corpus, tmp_path, name):
    from videolake.pipeline.decode import VideoInfo

    path = corpus[name].path
    info = VideoInfo(str(path), None, None, 10, 10, "unknown", None)  # as if a probe had passed
    result = analyzer.analyze(ShardJob("bad", "ck", info, WHOLE, str(tmp_path), "r", "h"))
    assert result.status == "failed" and result.error_kind in ("source", "decode")
    assert {"zero_bytes": "empty", "text": "not a readable video", "audio_only": "no video stream"}[name] in result.error
    assert not list(tmp_path.rglob("*.parquet"))


def test_truncated_video_is_processed_up_to_the_damage(analyzer, corpus, tmp_path):
    job = _job(corpus["truncated"].path, tmp_path)
    result = analyzer.analyze(job)
    assert result.status == "ok" and 0 < result.frames_analyzed


def test_prefetch_keeps_order_and_reraises_producer_errors():
    assert list(prefetch(iter(range(100)), depth=2)) == list(range(100))

    def broken():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(prefetch(broken()))


def test_a_shard_emits_only_its_range_and_its_warmup_goes_to_overlaps(analyzer, samples_dir, tmp_path):
    path = samples_dir / "bikes.mp4"
    info = probe(path)
    shards = plan_shards(info, shard_seconds=4, clip_seconds=2)
    assert [(s.t_start_s, s.t_end_s) for s in shards] == [(0, 4), (4, 8), (8, float("inf"))]  # 10 s video
    middle = shards[1]
    assert middle.decode_from_s in info.keyframes_s and middle.decode_from_s <= middle.warmup_from_s == 2.0
    job = _job(path, tmp_path, middle)
    result = analyzer.analyze(job)
    assert result.status == "ok" and result.frames_analyzed == 16  # 4 s at 4 fps
    dets = pq.read_table(job.path("detections")).to_pylist()
    assert all(4.0 <= d["t_s"] < 8.0 and d["shard_index"] == 1 for d in dets)
    assert all(d["track_id"] is None or d["track_id"] > 1_000_000 for d in dets)
    clips = pq.read_table(job.path("clips")).to_pylist()
    assert {c["clip_index"] for c in clips} <= {2, 3}
    overlaps = pq.read_table(job.path("overlaps")).to_pylist()
    assert overlaps and all(2.0 <= d["t_s"] < 4.0 for d in overlaps)
