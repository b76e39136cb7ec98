"""Run configuration: one typed object, validated in one place."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from videolake.pipeline.errors import ConfigError

__all__ = ["RunConfig", "TRACKERS", "MOTION_GATES", "VIDEO_EXTENSIONS", "PIPELINE_VERSION", "load_config_file"]

TRACKERS = ("bytetrack", "botsort")
RUNTIMES = ("auto", "torch", "onnx")
MOTION_GATES = ("auto", "on", "off")  # see pipeline/gating.py
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".ts")
# Bump when a change in the pipeline's logic changes results for the same settings and models.
# 2: pose per person, pose-aware actions with sitting and abstention; 3: the frame-edge rule (Evidence.PARTIAL);
# 4: no sitting for PARTIAL; 5: wide boxes posed in turned crops too (people lying down).
PIPELINE_VERSION = 5

# Settings that change what lands in the lake (they go into config_hash). The others
# (device, workers, max_workers, ray_address, batch, decoders, runtime, limits) only change where, how fast and what is
# refused. The detector's runtime (ONNX Runtime or PyTorch, fp16 on CUDA) moves boxes by fractions
# of a pixel, as device and batch do, so it is not part of the hash; tests/pipeline/test_detect.py
# checks that the runtimes agree.
_RESULT_KEYS = ("analysis_fps", "imgsz", "clip_seconds", "conf", "tracker", "min_track_frames", "shard_seconds", "pose_imgsz")
# The motion gate changes results too (carried rows), but only when it is on: with ``off`` the hash is the one
# of the releases before the gate, whose results it reproduces.
_GATE_KEYS = ("motion_gate", "motion_refresh_s")


@dataclass(frozen=True)
class RunConfig:
    """Settings of one run. ``detector``/``actions`` of ``"default"`` mean the embedded models.

    A plain dataclass that pydantic validates where it meets the outside: as the ``analyze``
    flow's ``config`` parameter, Prefect builds the deployment's typed parameter form from it
    (each field's docstring is its description) and checks a run's values against it.
    """

    __pydantic_config__ = {"use_attribute_docstrings": True, "extra": "forbid"}  # a pydantic ConfigDict

    detector: str = "default"
    """Detector weights (a path or an Ultralytics name); default: the embedded person detector."""
    actions: str = "default"
    """Action LSTM weights (.safetensors); default: the embedded model."""
    pose: str = "default"
    """Top-down pose model: default (embedded yolo11n-pose), Ultralytics pose weights, or none for box-only actions."""
    pose_imgsz: int = 192
    """Pose model input: each person crop is scaled to this square."""
    analysis_fps: float = 8.0
    """Frames per second analysed; 0 = every frame."""
    imgsz: int = 640
    """Detector input size (a multiple of 32)."""
    clip_seconds: float = 2.0
    """Length of the clips that get an action."""
    conf: float = 0.25
    """Detection confidence threshold."""
    tracker: str = "bytetrack"
    """bytetrack or botsort."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    workers: int | None = None
    """Ray actors; none: what the cores or GPUs support."""
    max_workers: int | None = None
    """Autoscaling: actors the backlog may ask for (the cluster adds nodes); none: what it holds now."""
    ray_address: str | None = None
    """Ray cluster; none: RAY_ADDRESS or a local Ray."""
    batch: int | None = None
    """Frames per detector forward pass; none: 8 on the CPU, 32 on CUDA."""
    runtime: str = "auto"
    """Detector runtime: auto (ONNX Runtime on CPU, PyTorch on CUDA), torch or onnx."""
    gpus_per_worker: float | None = None
    """GPU share per actor, e.g. 0.5; none: 1."""
    decoders: int | None = None
    """Shards one actor runs at once, each decoding in its own thread; none: 4 on CUDA, 1 on the CPU."""
    shard_seconds: float = 60.0
    """Cut videos into shards of about this length; 0 = whole video."""
    min_track_frames: int = 4
    """Detections a track needs in a clip for an action; fewer give unknown."""
    motion_gate: str = "auto"
    """Motion gate: auto (on for still cameras, off while the camera moves), on, off (see pipeline/gating.py)."""
    motion_refresh_s: float = 2.0
    """With the motion gate on, the detector runs at least this often (seconds)."""
    max_pixels: int = 8192 * 8192
    """Videos with larger frames are refused."""
    max_duration_s: float = 24 * 3600.0
    """Videos longer than this are refused."""
    shard_timeout_s: float = 3600.0
    """A shard running longer is stopped, tried once more, then quarantined."""
    probe_timeout_s: float = 600.0
    """Reading a video's header for longer than this quarantines it."""
    camera_pattern: str | None = None
    """Regular expression on the video's path whose group 'camera' (or first group) is its camera_id; none: the parent folder's name."""
    time_pattern: str = "%Y%m%d_%H%M%S"
    """strptime format of a start time in file names, for recorded_at when the container has none; empty: off."""

    def __post_init__(self) -> None:
        _check(self.analysis_fps >= 0, f"analysis_fps must be >= 0 (0 = every frame), got {self.analysis_fps}")
        _check(32 <= self.imgsz <= 4096 and self.imgsz % 32 == 0, f"imgsz must be a multiple of 32 in [32, 4096], got {self.imgsz}")
        _check(self.clip_seconds > 0, f"clip_seconds must be > 0, got {self.clip_seconds}")
        _check(0.0 <= self.conf <= 1.0, f"conf must be in [0, 1], got {self.conf}")
        _check(32 <= self.pose_imgsz <= 1024 and self.pose_imgsz % 32 == 0,
               f"pose_imgsz must be a multiple of 32 in [32, 1024], got {self.pose_imgsz}")
        _check(self.tracker in TRACKERS, f"tracker must be one of {', '.join(TRACKERS)}, got {self.tracker!r}")
        _check(_valid_device(self.device), f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        _check(self.workers is None or self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        _check(self.max_workers is None or self.max_workers >= 1, f"max_workers must be >= 1, got {self.max_workers}")
        _check(self.batch is None or self.batch >= 1, f"batch must be >= 1, got {self.batch}")
        _check(self.runtime in RUNTIMES, f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        _check(self.decoders is None or 1 <= self.decoders <= 64, f"decoders must be in [1, 64], got {self.decoders}")
        _check(self.gpus_per_worker is None or 0 < self.gpus_per_worker <= 8,
               f"gpus_per_worker must be in (0, 8] (fractions share a GPU), got {self.gpus_per_worker}")
        _check(self.shard_seconds >= 0, f"shard_seconds must be >= 0 (0 = whole video), got {self.shard_seconds}")
        _check(self.max_pixels >= 64 * 64, f"max_pixels must be >= 4096, got {self.max_pixels}")
        _check(self.max_duration_s > 0, f"max_duration_s must be > 0, got {self.max_duration_s}")
        _check(self.shard_timeout_s > 0, f"shard_timeout_s must be > 0, got {self.shard_timeout_s}")
        _check(self.probe_timeout_s > 0, f"probe_timeout_s must be > 0, got {self.probe_timeout_s}")
        _check(self.motion_gate in MOTION_GATES, f"motion_gate must be one of {', '.join(MOTION_GATES)}, got {self.motion_gate!r}")
        _check(self.motion_refresh_s > 0, f"motion_refresh_s must be > 0, got {self.motion_refresh_s}")
        _check(self.min_track_frames >= 1, f"min_track_frames must be >= 1, got {self.min_track_frames}")
        _check(_valid_regex(self.camera_pattern), f"camera_pattern is not a valid regular expression: {self.camera_pattern!r}")
        _check(not self.time_pattern or "%" in self.time_pattern,
               f"time_pattern must be a strptime format such as %Y%m%d_%H%M%S, got {self.time_pattern!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build from a mapping (YAML file, CLI flags). Keys may use ``-`` or ``_``; ``None`` values are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        clean: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in names:
                raise ConfigError(f"unknown setting {key!r}; known settings: {', '.join(sorted(names))}")
            if value is not None:
                clean[name] = value
        try:
            typed = {name: _coerce(cls, name, value) for name, value in clean.items()}
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        return cls(**typed)

    def merged(self, overrides: Mapping[str, Any]) -> RunConfig:
        """A copy with the non-None ``overrides`` applied."""
        current = self.to_dict()
        current.update({k.replace("-", "_"): v for k, v in overrides.items() if v is not None})
        return RunConfig.from_mapping(current)

    def batch_for(self, device: str) -> int:
        """Frames per detector forward pass: ``batch``, else 32 on CUDA and 8 on the CPU."""
        return self.batch or (32 if device.startswith("cuda") else 8)

    def decoders_for(self, device: str) -> int:
        """Shards an actor runs at once: ``decoders``, else 4 on CUDA (their decoders keep one GPU fed) and 1 on the CPU."""
        return self.decoders or (4 if device.startswith("cuda") else 1)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def config_hash(self, detector_sha256: str, actions_sha256: str, pose_sha256: str | None) -> str:
        """16 hex digits over every setting and model hash that changes results (``pose_sha256`` None: no pose)."""
        payload = {k: getattr(self, k) for k in _RESULT_KEYS + (_GATE_KEYS if self.motion_gate != "off" else ())}
        payload.update(detector=detector_sha256, actions=actions_sha256, pose=pose_sha256 or "none",
                       pipeline_version=PIPELINE_VERSION)
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_config_file(path: str | os.PathLike[str]) -> RunConfig:
    """Read a YAML file whose keys are the CLI's option names."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {p} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of settings, got {type(data).__name__}")
    return RunConfig.from_mapping(data)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _valid_regex(pattern: str | None) -> bool:
    import re

    try:
        return pattern is None or bool(re.compile(pattern).pattern)
    except re.error:
        return False


def _valid_device(device: str) -> bool:
    if device in ("auto", "cpu", "cuda"):
        return True
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


def _coerce(cls: type, name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    if "int" in kind and "str" not in kind:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if "float" in kind:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        return float(value)
    return str(value)
