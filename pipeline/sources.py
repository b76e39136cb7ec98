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

__all__ = ["VideoSource", "discover", "video_id_for", "content_key_for"]


@dataclass(frozen=True)
class VideoSource:
    """One video to analyse.

    ``video_id`` names the source (stable while the URI stays); ``content_key`` names its
    content version (size + modification time), so a replaced file is analysed again.
    """

    uri: str
    video_id: str
    size_bytes: int
    content_key: str


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
                st = candidate.stat()
                found[uri] = VideoSource(uri, video_id_for(uri), st.st_size, content_key_for(st.st_size, st.st_mtime_ns))
    return sorted(found.values(), key=lambda v: v.uri)


def video_id_for(uri: str) -> str:
    """``<stem>-<12 hex>``: the same for the same source URI, run after run."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(uri).stem)[:48] or "video"
    return f"{stem}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def content_key_for(size_bytes: int, version: int | str) -> str:
    """16 hex digits over the size and a version stamp (mtime in ns, or an object store's ETag)."""
    return hashlib.sha256(f"{size_bytes}:{version}".encode()).hexdigest()[:16]
