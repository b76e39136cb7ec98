import hashlib
import logging
import stat
import time

import numpy as np
import pytest

from videolake.pipeline.config import RunConfig
from videolake.pipeline.detect import Detections, Detector, resolve_runtime
from videolake.pipeline.errors import ConfigError, ModelError
from videolake.pipeline.models import default_detector_path, exported_model, sha256_file
from tests.media import real_frames


def test_detections_validate_shapes_with_expected_and_actual():
    with pytest.raises(ValueError, match=r"xyxy must have shape \(_, 4\), got \(3, 5\)"):
        Detections(np.zeros((3, 5)), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"confidence must have shape \(2,\), got \(3,\)"):
        Detections(np.zeros((2, 4)), np.zeros(3), np.zeros(2))
    empty = Detections.empty()
    assert len(empty) == 0 and empty.tracker_id.shape == (0,)
    d = Detections(np.ones((2, 4)), [0.5, 0.6], [0, 1])
    assert d.tracker_id.tolist() == [-1, -1] and len(d[d.confidence > 0.55]) == 1


@pytest.fixture(scope="module")
def detector():
    return Detector(str(default_detector_path()), imgsz=320, conf=0.25, device="cpu")


@pytest.fixture(scope="module")
def torch_detector():
    return Detector(str(default_detector_path()), imgsz=320, conf=0.25, device="cpu", runtime="torch")


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes a (n, 4) and b (m, 4): supervision's, as the pipeline uses."""
    from supervision.detection.utils.iou_and_nms import box_iou_batch

    return box_iou_batch(a, b)


def test_default_detector_finds_the_person_in_carphone_in_original_pixels(detector):
    frames = real_frames("carphone_pristine.mp4", limit=8)
    results = detector(frames[::2])
    assert detector.names == {0: "Normal", 1: "Fall"}
    assert len(results) == 4 and all(len(d) >= 1 for d in results)
    best = results[0][int(np.argmax(results[0].confidence))]
    x1, y1, x2, y2 = best.xyxy[0]
    assert 0 <= x1 < x2 <= 176 and 0 <= y1 < y2 <= 144  # the 176x144 frame, not the 320 letterbox
    assert (x2 - x1) * (y2 - y1) > 0.1 * 176 * 144  # the man fills much of the frame
    assert best.confidence[0] > 0.25
    assert detector.agnostic_nms  # Normal and Fall are states of one person: one box each
    assert all(len(d) == 1 for d in results)  # one man, one box


def test_from_ultralytics_matches_the_raw_boxes(detector):
    frame = real_frames("carphone_pristine.mp4", limit=1)[0]
    raw = detector.model.predict(frame, imgsz=320, verbose=False)[0]
    d = Detections.from_ultralytics(raw)
    np.testing.assert_allclose(d.xyxy, raw.boxes.xyxy.numpy())
    np.testing.assert_allclose(d.confidence, raw.boxes.conf.numpy())
    assert d.tracker_id.tolist() == [-1] * len(d)


def test_cpu_default_runs_onnx_runtime_and_agrees_with_pytorch_on_real_frames(detector, torch_detector):
    assert detector.runtime == "onnx" and torch_detector.runtime == "torch"
    frames = real_frames("carphone_pristine.mp4", limit=16)[::2] + real_frames("bikes.mp4", limit=120)[60::8]
    compared = 0
    for a, b in zip(detector(frames), torch_detector(frames)):
        assert len(a) == len(b)
        if len(a):
            iou = _box_iou(a.xyxy, b.xyxy)
            assert (iou.max(axis=1) >= 0.9).all(), iou
            np.testing.assert_array_equal(a.class_id, b.class_id[iou.argmax(axis=1)])
            np.testing.assert_allclose(a.confidence, b.confidence[iou.argmax(axis=1)], atol=0.02)
            compared += len(a)
    assert compared >= 8


def test_onnx_letterbox_is_rectangular_at_the_videos_aspect(detector):
    frame = real_frames("bikes.mp4", limit=1)[0]
    assert frame.shape == (272, 640, 3)
    for imgsz, shape in ((320, (1, 3, 160, 320)), (640, (1, 3, 288, 640))):
        detector.model.predictor.imgsz = (imgsz, imgsz)
        assert tuple(detector.model.predictor.preprocess([frame]).shape) == shape  # not imgsz x imgsz
    detector.model.predictor.imgsz = (320, 320)


def test_onnx_runtime_threads_follow_the_workers_share():
    one = Detector(str(default_detector_path()), imgsz=320, runtime="onnx", threads=1)
    assert one.model.predictor.model.backend.session.get_session_options().intra_op_num_threads == 1
    assert len(one(real_frames("carphone_pristine.mp4", limit=2))) == 2


def test_export_is_cached_by_weights_and_imgsz_and_written_whole(tmp_path):
    weights = str(default_detector_path())
    first, task = exported_model(weights, 320, cache=tmp_path)
    assert task == "detect" and first.suffix == ".onnx" and first.stat().st_size > 1_000_000 and "-320-" in first.name
    record = first.with_name(first.name + ".sha256")
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name, record.name]  # no temporary folder left behind
    assert record.read_text().strip() == sha256_file(first)
    assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700  # nobody else can swap the model
    mtime = first.stat().st_mtime_ns
    started = time.perf_counter()
    assert exported_model(weights, 320, cache=tmp_path) == (first, "detect")  # a hit: nothing exported again
    assert time.perf_counter() - started < 1.0 and first.stat().st_mtime_ns == mtime


def test_a_cached_export_that_no_longer_matches_its_record_is_exported_again(tmp_path, caplog):
    weights = str(default_detector_path())
    first, _ = exported_model(weights, 320, cache=tmp_path / "new" / "cache")
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in (first.parent, first.parent.parent))
    good = first.read_bytes()
    swapped = bytearray(good)
    swapped[len(good) // 2] ^= 0xFF  # a swapped model under the same cache key
    first.write_bytes(bytes(swapped))
    with caplog.at_level(logging.WARNING, logger="videolake.pipeline.models"):
        again, _ = exported_model(weights, 320, cache=tmp_path / "new" / "cache")
    assert again == first and "does not match its recorded sha256" in caplog.text
    assert sha256_file(again) == again.with_name(again.name + ".sha256").read_text().strip() != sha256_file_bytes(swapped)


def test_a_cache_others_can_write_is_not_used(tmp_path, caplog):
    shared = tmp_path / "shared"
    (shared / "detectors").mkdir(parents=True)
    (shared / "detectors").chmod(0o777)
    with pytest.raises(ModelError, match="writable by other users"):
        exported_model(str(default_detector_path()), 320, cache=shared)
    assert list((shared / "detectors").iterdir()) == []


def test_failed_export_falls_back_to_pytorch_with_a_warning(tmp_path, monkeypatch, caplog):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")  # the export cannot be written
    monkeypatch.setenv("VIDEOLAKE_CACHE", str(blocked))
    with caplog.at_level(logging.WARNING, logger="videolake.pipeline.detect"):
        d = Detector(str(default_detector_path()), imgsz=320, runtime="onnx")
    assert d.runtime == "torch" and "running the detector in PyTorch instead" in caplog.text
    assert len(d(real_frames("carphone_pristine.mp4", limit=1))[0]) == 1


@pytest.mark.parametrize("runtime, device, weights, expected", [
    ("auto", "cpu", "best.pt", "onnx"), ("auto", "cuda", "best.pt", "torch"), ("auto", "cuda:1", "best.pt", "torch"),
    ("torch", "cpu", "best.pt", "torch"), ("onnx", "cpu", "best.pt", "onnx"), ("auto", "cpu", "mine.onnx", "onnx"),
    ("torch", "cpu", "mine.onnx", "onnx"), ("auto", "cpu", "mine.engine", "torch"),
])
def test_runtime_resolution(runtime, device, weights, expected):
    assert resolve_runtime(runtime, device, weights) == expected


def test_bad_runtime_and_batch_defaults():
    with pytest.raises(ConfigError, match="runtime must be one of auto, torch, onnx, got 'tensorrt'"):
        RunConfig(runtime="tensorrt")
    assert RunConfig().batch_for("cpu") == 8 and RunConfig().batch_for("cuda:0") == 32
    assert RunConfig(batch=4).batch_for("cuda") == 4
    assert RunConfig().config_hash("a", "b", "p") == RunConfig(runtime="torch", batch=2).config_hash("a", "b", "p")


def test_bad_weights_are_a_model_error(tmp_path):
    from videolake.pipeline.errors import ModelError

    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not weights")
    with pytest.raises(ModelError, match="cannot load detector"):
        Detector(str(bad))


@pytest.mark.needs_cuda
def test_cuda_detector_runs_in_half_precision_and_agrees_with_cpu():
    frames = real_frames("carphone_pristine.mp4", limit=4)
    gpu = Detector(str(default_detector_path()), imgsz=320, device="cuda")
    cpu = Detector(str(default_detector_path()), imgsz=320, device="cpu")
    assert gpu.half and gpu.runtime == "torch"
    assert next(gpu.model.predictor.model.parameters()).dtype.is_floating_point
    assert gpu.model.predictor.model.fp16
    for a, b in zip(gpu(frames), cpu(frames)):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=3.0)


@pytest.mark.needs_cuda
@pytest.mark.parametrize("batch", [1, 8, 32])
def test_cuda_batched_fp16_forward_passes_agree_with_single_frames(batch):
    frames = real_frames("bikes.mp4", limit=120, size=(640, 360))[::120 // batch][:batch]
    gpu = Detector(str(default_detector_path()), imgsz=640, device="cuda")
    batched = gpu(frames)
    assert len(batched) == batch
    for frame, together in zip(frames, batched):
        alone = gpu([frame])[0]
        assert len(alone) == len(together)
        if len(alone):
            assert (_box_iou(alone.xyxy, together.xyxy).max(axis=1) >= 0.9).all()


def sha256_file_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
