import numpy as np
import pytest

from pipeline.detect import Detections, Detector
from pipeline.models import default_detector_path
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


def test_bad_weights_are_a_model_error(tmp_path):
    from pipeline.errors import ModelError

    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not weights")
    with pytest.raises(ModelError, match="cannot load detector"):
        Detector(str(bad))


@pytest.mark.needs_cuda
def test_cuda_detector_runs_in_half_precision_and_agrees_with_cpu():
    frames = real_frames("carphone_pristine.mp4", limit=4)
    gpu = Detector(str(default_detector_path()), imgsz=320, device="cuda")
    cpu = Detector(str(default_detector_path()), imgsz=320, device="cpu")
    assert gpu.half
    for a, b in zip(gpu(frames), cpu(frames)):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=3.0)
