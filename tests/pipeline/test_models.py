import subprocess
import sys

import pytest

from videolake.pipeline.errors import ModelError
from videolake.pipeline.models import action_classes, default_detector_path, resolve_actions, resolve_detector


def test_default_detector_is_found_through_metadata_without_importing_its_package():
    code = ("import sys; from videolake.pipeline.models import default_detector_path; p = default_detector_path(); "
            "assert 'fall_detection' not in sys.modules; print(p)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out.endswith("fall_detection/models/best.pt")
    assert default_detector_path().stat().st_size > 1_000_000


def test_resolved_models_carry_their_sha256():
    detector, actions = resolve_detector("default"), resolve_actions("default")
    assert len(detector.sha256) == 64 and len(actions.sha256) == 64
    assert resolve_detector(detector.path).sha256 == detector.sha256
    assert action_classes(actions.path) == ("standing", "walking", "running", "falling", "lying")


@pytest.mark.parametrize("spec, message", [("/nope/weights.pt", "detector weights not found"), ("dir/x.pt", "not found")])
def test_missing_detector_weights_are_a_model_error(spec, message):
    with pytest.raises(ModelError, match=message):
        resolve_detector(spec)


def test_action_weights_must_be_safetensors(tmp_path):
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(b"x")
    with pytest.raises(ModelError, match="never pickle"):
        resolve_actions(str(pickled))
    with pytest.raises(ModelError, match="not found"):
        resolve_actions(str(tmp_path / "missing.safetensors"))
