"""One video end to end through the library, with the real default models."""

import pyarrow.parquet as pq
import pytest

from pipeline.actions import ActionModel
from pipeline.analyze import VideoAnalyzer, VideoJob, prefetch
from pipeline.config import RunConfig
from pipeline.decode import probe
from pipeline.detect import Detector
from pipeline.lake import table_path
from pipeline.models import default_actions_path, default_detector_path
from pipeline.sources import video_id_for
from tests.conftest import FAST


@pytest.fixture(scope="module")
def analyzer():
    cfg = RunConfig(**FAST)
    detector = Detector(str(default_detector_path()), imgsz=cfg.imgsz, conf=cfg.conf, device="cpu")
    return VideoAnalyzer(cfg, detector, ActionModel.load(default_actions_path()))


def _job(path, lake):
    return VideoJob(video_id_for(str(path)), probe(path), str(lake), "run-1", "cfg1")


def test_carphone_gives_tracked_detections_and_one_clip_row_per_track_and_window(analyzer, samples_dir, tmp_path):
    job = _job(samples_dir / "carphone_pristine.mp4", tmp_path)
    seen = []
    result = analyzer.analyze(job, progress=seen.append)
    assert result.status == "ok", result.error
    assert result.frames_analyzed == sum(seen) == 16  # 4.0 s at 4 fps
    dets = pq.read_table(table_path(tmp_path, "detections", job.video_id, "cfg1")).to_pylist()
    clips = pq.read_table(table_path(tmp_path, "clips", job.video_id, "cfg1")).to_pylist()
    assert len(dets) == result.n_detections >= 12
    assert {d["video_id"] for d in dets} == {job.video_id} and {d["run_id"] for d in dets} == {"run-1"}
    assert all(0 <= d["x1"] < d["x2"] <= 176 and 0 <= d["y1"] < d["y2"] <= 144 for d in dets)
    assert sum(d["track_id"] is not None for d in dets) >= 0.7 * len(dets)
    keys = [(c["clip_index"], c["track_id"]) for c in clips]
    assert len(keys) == len(set(keys)) == result.n_clips >= 2
    assert {c["clip_index"] for c in clips} == {0, 1}  # 2 s windows over a 4 s video
    for c in clips:
        if c["action"] != "unknown":
            assert len(c["action_probs"]) == 5 and abs(sum(c["action_probs"]) - 1) < 1e-3
            assert c["n_frames"] >= 4
    assert sum(result.clips_by_action.values()) == len(clips)


@pytest.mark.parametrize("name", ["zero_bytes", "text", "audio_only"])
def test_bad_videos_come_back_failed_with_the_reason_and_write_nothing(analyzer, corpus, tmp_path, name):
    from pipeline.decode import VideoInfo

    path = corpus[name].path
    info = VideoInfo(str(path), None, None, 10, 10, "unknown", None)  # as if a probe had passed
    result = analyzer.analyze(VideoJob("bad", info, str(tmp_path), "r", "h"))
    assert result.status == "failed"
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
