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


def _clean_env() -> dict:
    """This environment without the Ultralytics settings videolake sets: the subprocess must set them itself."""
    import os

    from videolake.pipeline.models import ULTRALYTICS_ENV

    return {k: v for k, v in os.environ.items() if k not in ULTRALYTICS_ENV}


def _payload(path, marker) -> None:
    """A real malicious checkpoint: unpickling it runs ``touch marker``."""
    code = ("import os, sys, torch\n"
            "class Payload:\n"
            "    def __reduce__(self):\n"
            "        return (os.system, ('touch ' + sys.argv[2],))\n"
            "torch.save({'model': Payload(), 'train_args': {}}, sys.argv[1])\n")
    subprocess.run([sys.executable, "-c", code, str(path), str(marker)], check=True)


def test_a_crafted_pt_payload_is_refused_and_never_runs(tmp_path):
    evil, marker = tmp_path / "best.pt", tmp_path / "pwned"
    _payload(evil, marker)
    # The payload is live: a plain unpickle runs it.
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(evil)!r}, weights_only=False)"], check=True)
    assert marker.exists()
    marker.unlink()
    # Through videolake, in a process whose environment does not ask for safe loading: the PyTorch
    # runtime, the ONNX export (which loads the .pt first) and the `models` command's class lookup.
    code = (
        "import sys\n"
        "from videolake.pipeline.detect import Detector\n"
        "from videolake.pipeline.errors import ModelError\n"
        "from videolake.pipeline.models import exported_detector\n"
        "from videolake.cli import _detector_classes\n"
        "for load in (lambda: Detector(sys.argv[1], imgsz=64, runtime='torch'),\n"
        "             lambda: Detector(sys.argv[1], imgsz=64, runtime='onnx'),\n"
        "             lambda: exported_detector(sys.argv[1], 64, cache=__import__('pathlib').Path(sys.argv[2])),\n"
        "             lambda: _detector_classes(sys.argv[1])):\n"
        "    try:\n"
        "        load()\n"
        "    except ModelError as exc:\n"
        "        print('refused:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(evil), str(tmp_path / "cache")], capture_output=True, text=True,
                         env=_clean_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("refused:") == 4 and "outside the supported Ultralytics checkpoint format" in out.stdout, out.stdout
    assert not marker.exists()


def test_importing_videolake_turns_ultralytics_autoinstall_off_and_safe_loading_on():
    code = ("import videolake\nfrom ultralytics.utils import checks\nfrom ultralytics.nn import tasks\n"
            "print(checks.AUTOINSTALL, tasks.SAFE_LOAD)\n"
            "print(checks.check_requirements('videolake-no-such-package-7f3a'))\n")  # False without a pip install
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_clean_env())
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert (lines[0], lines[-1]) == ("False True", "False"), out.stdout
    assert "AutoUpdate disabled" in out.stderr + out.stdout and "attempting AutoUpdate" not in out.stderr + out.stdout


def test_weights_are_not_loaded_where_ultralytics_came_first_without_safe_loading():
    code = ("import ultralytics\nfrom videolake.pipeline.models import check_safe_ultralytics\n"
            "from videolake.pipeline.errors import ModelError\n"
            "try:\n    check_safe_ultralytics()\nexcept ModelError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_clean_env())
    assert "imported before videolake turned on its safe loading" in out.stdout, (out.stdout, out.stderr)


def test_embedded_models_are_pinned_by_sha256(monkeypatch):
    from videolake.pipeline import models

    detector = resolve_detector("default")
    assert detector.sha256 == models.EMBEDDED_MODELS["detector"].sha256 and "sha256 pinned" in detector.source
    real = models.EMBEDDED_MODELS["detector"]
    monkeypatch.setitem(models.EMBEDDED_MODELS, "detector", models.EmbeddedModel(real.dist, real.file, "0" * 64))
    with pytest.raises(ModelError, match="is not the pinned file"):
        resolve_detector("default")
    monkeypatch.setitem(models.EMBEDDED_MODELS, "pose", models.EmbeddedModel(real.dist, "nope/yolo11n-pose.pt", "0" * 64))
    with pytest.raises(ModelError, match="nope/yolo11n-pose.pt is missing"):
        models.embedded_model_path("pose")
    monkeypatch.setitem(models.EMBEDDED_MODELS, "pose", models.EmbeddedModel("videolake-no-such-dist", "x.pt", "0" * 64))
    with pytest.raises(ModelError, match="pip install videolake-no-such-dist"):
        models.embedded_model_path("pose")
