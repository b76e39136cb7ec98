"""Finding videos and naming them: local files and folders."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pipeline.config import VIDEO_EXTENSIONS
from pipeline.errors import SourceError

__all__ = ["VideoSource", "discover", "video_id_for"]

_FINGERPRINT_BYTES = 64 * 1024


@dataclass(frozen=True)
class VideoSource:
    """One video to analyse: where it is, its stable id and its size."""

    uri: str
    video_id: str
    size_bytes: int


def discover(sources: Iterable[str | os.PathLike[str]], extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[VideoSource]:
    """Expand files and folders (recursively, by extension) into a sorted, de-duplicated list.

    A file named explicitly is taken whatever its extension; a missing path is an error.
    """
    found: dict[str, VideoSource] = {}
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        elif path.exists():
            candidates = [path]
        else:
            raise SourceError(f"source not found: {source}")
        for candidate in candidates:
            uri = str(candidate.resolve())
            if uri not in found:
                found[uri] = VideoSource(uri=uri, video_id=video_id_for(uri), size_bytes=candidate.stat().st_size)
    return sorted(found.values(), key=lambda v: v.uri)


def video_id_for(uri: str) -> str:
    """``<stem>-<12 hex>``: stable for the same source and content.

    The hash covers the URI, the size, and the first and last 64 KiB of the file, so a
    video replaced by another under the same name gets a new id without hashing it whole.
    """
    digest = hashlib.sha256(uri.encode())
    try:
        size = os.path.getsize(uri)
        digest.update(str(size).encode())
        with open(uri, "rb") as f:
            digest.update(f.read(_FINGERPRINT_BYTES))
            if size > 2 * _FINGERPRINT_BYTES:
                f.seek(size - _FINGERPRINT_BYTES)
                digest.update(f.read(_FINGERPRINT_BYTES))
    except OSError as exc:
        raise SourceError(f"cannot read {uri}: {exc.strerror or exc}") from None
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(uri).stem)[:48] or "video"
    return f"{stem}-{digest.hexdigest()[:12]}"
