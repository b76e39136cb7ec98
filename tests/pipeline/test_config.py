import pytest

from videolake.pipeline.config import RunConfig, load_config_file
from videolake.pipeline.errors import ConfigError


def test_defaults_match_the_documented_cli_defaults():
    cfg = RunConfig()
    assert (cfg.analysis_fps, cfg.imgsz, cfg.clip_seconds, cfg.conf, cfg.tracker, cfg.device) == (8.0, 640, 2.0, 0.25, "bytetrack", "auto")
    assert cfg.detector == cfg.actions == "default"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"imgsz": 100}, "imgsz must be a multiple of 32"),
        ({"analysis_fps": -1}, "analysis_fps must be >= 0"),
        ({"clip_seconds": 0}, "clip_seconds must be > 0"),
        ({"conf": 1.5}, "conf must be in [0, 1]"),
        ({"tracker": "sort"}, "tracker must be one of bytetrack, botsort"),
        ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N"),
        ({"workers": 0}, "workers must be >= 1"),
        ({"imgsz": 320.5}, "imgsz must be an integer"),
        ({"gpus_per_worker": 0}, "gpus_per_worker must be in"),
        ({"colour": "red"}, "unknown setting 'colour'"),
    ],
)
def test_bad_settings_get_a_clear_config_error(values, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RunConfig.from_mapping(values)


def test_yaml_file_accepts_cli_option_names_and_cli_flags_override_it(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("analysis-fps: 4\nimgsz: 320\ntracker: botsort\ndevice: cuda:1\n")
    cfg = load_config_file(path)
    assert (cfg.analysis_fps, cfg.imgsz, cfg.tracker, cfg.device) == (4.0, 320, "botsort", "cuda:1")
    merged = cfg.merged({"imgsz": 640, "tracker": None})
    assert (merged.imgsz, merged.tracker) == (640, "botsort")


@pytest.mark.parametrize("text, message", [("- a\n- b\n", "must hold a mapping"), ("a: [\n", "not valid YAML")])
def test_bad_yaml_is_a_config_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config_file(path)


def test_config_hash_covers_results_but_not_placement():
    base = RunConfig().config_hash("d" * 64, "a" * 64, "p" * 64)
    assert RunConfig(workers=3, device="cpu", batch=2).config_hash("d" * 64, "a" * 64, "p" * 64) == base
    assert RunConfig(imgsz=320).config_hash("d" * 64, "a" * 64, "p" * 64) != base
    assert RunConfig(analysis_fps=4).config_hash("d" * 64, "a" * 64, "p" * 64) != base
    assert RunConfig().config_hash("e" * 64, "a" * 64, "p" * 64) != base
    assert RunConfig().config_hash("d" * 64, "b" * 64, "p" * 64) != base
    assert RunConfig().config_hash("d" * 64, "a" * 64, None) != base  # no pose: box-only results
    assert RunConfig(pose_imgsz=256).config_hash("d" * 64, "a" * 64, "p" * 64) != base
    assert len(base) == 16


def test_the_gate_settings_are_validated_and_change_the_config_hash_only_when_on():
    with pytest.raises(ConfigError, match="motion_gate must be one of auto, on, off"):
        RunConfig(motion_gate="sometimes")
    with pytest.raises(ConfigError, match="motion_refresh_s must be > 0"):
        RunConfig(motion_refresh_s=0)
    hashes = {mode: RunConfig(motion_gate=mode).config_hash("d", "a", "p") for mode in ("auto", "on", "off")}
    assert len(set(hashes.values())) == 3
    assert RunConfig(motion_gate="off", motion_refresh_s=9).config_hash("d", "a", "p") == hashes["off"]
    assert RunConfig(motion_refresh_s=4.0).config_hash("d", "a", "p") != hashes["auto"]
    # off: the hash of the releases before the gate, whose results it gives (at PIPELINE_VERSION 4; 7f823a35d721f370 at 3, b3eb53f26a12f474 at 2)
    assert RunConfig(motion_gate="off").config_hash("d" * 64, "a" * 64, "p" * 64) == "b3cde163fb85ca70"
