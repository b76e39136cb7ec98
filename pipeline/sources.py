"""Finding videos and naming them: local files and folders, bucket prefixes and globs (fsspec URLs)."""

from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from videolake.pipeline import storage
from videolake.pipeline.config import VIDEO_EXTENSIONS
from videolake.pipeline.errors import SourceError

__all__ = ["VideoSource", "discover", "check_reachable", "video_id_for", "content_key_for"]


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
    """Expand files, folders, bucket prefixes and globs into a sorted, de-duplicated list.

    Folders and prefixes are searched recursively and filtered by extension, and so are
    globs (``s3://cams/2026-11-*/**/*.mp4``). A file or object named explicitly is taken
    whatever its extension. A missing path or bucket is an error; an empty prefix is not.
    A bucket listing reads no object: sizes and ETags come from the listing itself.

    Paths are literal where they exist: ``*``, ``?`` and ``[`` make a glob only of a path that
    does not exist, and then only past its longest existing folder (``cams[1]/*.mp4`` globs
    ``*.mp4`` inside the folder ``cams[1]``). A local file or folder named ``cam[2].mp4`` is that file.
    """
    found: dict[str, VideoSource] = {}
    for source in sources:
        url = storage.normalize(source)
        for uri, size_bytes, version in (_remote(url, extensions) if storage.is_remote(url) else _local(url, extensions)):
            if uri not in found:
                found[uri] = VideoSource(uri, video_id_for(uri), size_bytes, content_key_for(size_bytes, version))
    return sorted(found.values(), key=lambda v: v.uri)


def check_reachable(sources: Iterable[str | os.PathLike[str]]) -> None:
    """Fail fast on a missing path or bucket, without listing: the cheap check before a run starts."""
    for source in sources:
        url = storage.normalize(source)
        if not storage.is_remote(url):
            if not os.path.exists(url) and not _is_glob(url):
                raise SourceError(f"source not found: {url}")
            continue
        try:
            if not storage.exists(_bucket(url)):
                raise FileNotFoundError(url)
        except Exception as exc:  # noqa: BLE001 - one clean error naming the URL
            raise storage.storage_error(url, exc, "cannot list", SourceError) from None


def _local(url: str, extensions: tuple[str, ...]) -> list[tuple[str, int, int | str]]:
    path = Path(url)
    if path.is_dir():
        candidates = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    elif path.exists():
        candidates = [path]
    elif _is_glob(url):
        candidates = [Path(p) for p in sorted(glob.glob(_literal_prefix(path), recursive=True))
                      if os.path.isfile(p) and Path(p).suffix.lower() in extensions]
    else:
        raise SourceError(f"source not found: {url}")
    out = []
    for candidate in candidates:
        st = candidate.stat()
        out.append((str(candidate.resolve()), st.st_size, st.st_mtime_ns))
    return out


def _remote(url: str, extensions: tuple[str, ...]) -> list[tuple[str, int, str]]:
    try:
        pattern = _is_glob(url) and not storage.exists(url)  # an object or prefix that exists is literal
        files = storage.list_files(url, pattern=pattern)
        if not files and not storage.exists(_bucket(url)):
            raise FileNotFoundError(url)
    except Exception as exc:  # noqa: BLE001 - one clean error naming the URL
        raise storage.storage_error(url, exc, "cannot list", SourceError) from None
    explicit = not pattern and len(files) == 1 and files[0].url == url
    return [(f.url, f.size_bytes, f.version) for f in files
            if explicit or os.path.splitext(f.url)[1].lower() in extensions]


def _is_glob(url: str) -> bool:
    return any(c in url for c in "*?[")


def _literal_prefix(pattern: Path) -> str:
    """``pattern`` with its longest existing folder escaped: what exists is literal, the rest is the glob."""
    base = next(p for p in pattern.parents if p.is_dir())
    return os.path.join(glob.escape(str(base)), str(pattern.relative_to(base)))


def _bucket(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def video_id_for(uri: str) -> str:
    """``<stem>-<12 hex>``: the same for the same source URI, run after run."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(uri.rsplit("/", 1)[-1]).stem)[:48] or "video"
    return f"{stem}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def content_key_for(size_bytes: int, version: int | str) -> str:
    """16 hex digits over the size and a version stamp (mtime in ns, or an object store's ETag)."""
    return hashlib.sha256(f"{size_bytes}:{version}".encode()).hexdigest()[:16]
