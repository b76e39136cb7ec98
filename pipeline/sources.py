"""Finding videos and naming them: local files and folders, bucket prefixes and globs (fsspec URLs).

A video is identified by its content, not by its path: ``content_key`` hashes the file's size
and its first and last MiB (two range reads on a bucket), so a moved or copied archive holds the
same videos. A file the lake has seen before at the same path, size and version (mtime or
ETag) is not read at all: its key comes from the lake (``Identities``). ``camera_id`` comes
from the path (by default the parent folder's name) and ``recorded_at`` from the container's
``creation_time``, a date in the file name or a sidecar JSON file, in that order.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from videolake.pipeline import storage
from videolake.pipeline.config import VIDEO_EXTENSIONS
from videolake.pipeline.errors import SourceError

__all__ = ["VideoSource", "Identities", "discover", "check_reachable", "video_id_for", "content_key_for", "fingerprint",
           "camera_id_for", "recorded_at_for", "DEFAULT_TIME_PATTERN", "FINGERPRINT_BYTES"]

FINGERPRINT_BYTES = 1 << 20  # read from the head and from the tail of each new file
DEFAULT_TIME_PATTERN = "%Y%m%d_%H%M%S"
_FINGERPRINT_THREADS = 8
# Keys this process computed, by (uri, size, version): `videolake run` lists before the flow starts,
# and the flow lists again.
_FINGERPRINTS: dict[tuple[str, int, str], str] = {}


@dataclass(frozen=True)
class VideoSource:
    """One video to analyse.

    ``content_key`` names the content (size + hashes of the head and tail); ``video_id`` is
    ``<stem>-<12 hex of content_key>`` when the lake first sees it, and stays that video's id
    wherever the file moves. ``version`` is the listing's mtime (ns) or ETag.
    """

    uri: str
    video_id: str
    size_bytes: int
    content_key: str
    version: str = ""
    camera_id: str | None = None


@dataclass
class Identities:
    """What the lake knows of sources it has seen: (uri, size, version) → content key, and
    content key → (video id, recorded uri)."""

    by_version: dict[tuple[str, int, str], str] = field(default_factory=dict)
    by_content: dict[str, tuple[str, str]] = field(default_factory=dict)


def discover(
    sources: Iterable[str | os.PathLike[str]], extensions: tuple[str, ...] = VIDEO_EXTENSIONS,
    known: Identities | None = None, camera_pattern: str | None = None,
) -> list[VideoSource]:
    """Expand files, folders, bucket prefixes and globs into a sorted list, one entry per content.

    Folders and prefixes are searched recursively and filtered by extension, and so are
    globs (``s3://cams/2026-11-*/**/*.mp4``). A file or object named explicitly is taken
    whatever its extension. A missing path or bucket is an error; an empty prefix is not.
    Files ``known`` at the same path, size and version are not read; the others are
    fingerprinted (``fingerprint``). Copies of one content count once: at the path the lake
    recorded for it, else the first path.

    Paths are literal where they exist: ``*``, ``?`` and ``[`` make a glob only of a path that
    does not exist, and then only past its longest existing folder (``cams[1]/*.mp4`` globs
    ``*.mp4`` inside the folder ``cams[1]``). A local file or folder named ``cam[2].mp4`` is that file.
    """
    known = known or Identities()
    listed: dict[str, tuple[int, str]] = {}
    for source in sources:
        url = storage.normalize(source)
        for uri, size_bytes, version in (_remote(url, extensions) if storage.is_remote(url) else _local(url, extensions)):
            listed.setdefault(uri, (size_bytes, str(version)))
    todo = [uri for uri, (size, version) in listed.items()
            if (uri, size, version) not in known.by_version and (uri, size, version) not in _FINGERPRINTS]
    with ThreadPoolExecutor(min(_FINGERPRINT_THREADS, max(1, len(todo)))) as pool:
        for uri, key in zip(todo, pool.map(lambda uri: fingerprint(uri, listed[uri][0]), todo)):
            _FINGERPRINTS[(uri, *listed[uri])] = key
    keys = {uri: _FINGERPRINTS[(uri, *v)] for uri, v in listed.items() if (uri, *v) in _FINGERPRINTS}
    found: dict[str, VideoSource] = {}
    for uri in sorted(listed):
        size, version = listed[uri]
        key = keys.get(uri) or known.by_version[(uri, size, version)]
        video_id, recorded_uri = known.by_content.get(key, (video_id_for(uri, key), None))
        if key in found and found[key].uri == recorded_uri:
            continue
        if key not in found or uri == recorded_uri:
            found[key] = VideoSource(uri, video_id, size, key, version, camera_id_for(uri, camera_pattern))
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


def video_id_for(uri: str, content_key: str) -> str:
    """``<stem>-<12 hex of the content key>``: the id a video gets where the lake first sees it."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(uri.rsplit("/", 1)[-1]).stem)[:48] or "video"
    return f"{stem}-{content_key[:12]}"


def fingerprint(uri: str, size_bytes: int) -> str:
    """``content_key``: 32 hex digits over the size and the first and last ``FINGERPRINT_BYTES``
    (two range reads on a bucket; the whole file when it is smaller than that)."""
    ranges = [(0, min(size_bytes, FINGERPRINT_BYTES))]
    if size_bytes > FINGERPRINT_BYTES:
        ranges.append((max(FINGERPRINT_BYTES, size_bytes - FINGERPRINT_BYTES), size_bytes))
    digest = hashlib.sha256(f"{size_bytes}:".encode())
    try:
        if storage.is_remote(uri):
            fs, path = storage.filesystem(uri)
            for start, end in ranges:
                digest.update(fs.cat_file(path, start=start, end=end))
        else:
            with open(uri, "rb") as f:
                for start, end in ranges:
                    f.seek(start)
                    digest.update(f.read(end - start))
    except Exception as exc:  # noqa: BLE001 - one clean error naming the file
        raise storage.storage_error(uri, exc, "cannot read", SourceError) from None
    return digest.hexdigest()[:32]


def content_key_for(size_bytes: int, version: int | str) -> str:
    """The content key of videolake's first lake layout (size and mtime or ETag); kept to read such lakes."""
    return hashlib.sha256(f"{size_bytes}:{version}".encode()).hexdigest()[:16]


def camera_id_for(uri: str, pattern: str | None = None) -> str | None:
    """The camera of a video: the group ``camera`` (or the first group, or the whole match) of the
    regular expression ``pattern`` searched in its URI; without a pattern, its parent folder's name."""
    if pattern:
        match = re.search(pattern, uri)
        if not match:
            return None
        if "camera" in match.groupdict():
            return match.group("camera")
        return match.group(1) if match.groups() else match.group(0)
    parent = uri.rstrip("/").rsplit("/", 1)[0]
    name = parent.rsplit("/", 1)[-1]
    return name if name and not name.endswith(":") else None


def recorded_at_for(uri: str, creation_time: str | None, time_pattern: str | None = DEFAULT_TIME_PATTERN,
                    ) -> tuple[datetime | None, str | None]:
    """When the video starts, in UTC, and where that came from: ``container`` (its ``creation_time``
    tag), ``filename`` (``time_pattern``, a strptime format, found in the file name), ``sidecar``
    (``recorded_at`` in ``<file without extension>.json`` beside it); ``(None, None)`` when unknown.
    Times without a zone are taken as UTC."""
    when = _parse_time(creation_time)
    if when is not None:
        return when, "container"
    if time_pattern:
        when = _time_in_name(uri.rsplit("/", 1)[-1], time_pattern)
        if when is not None:
            return when, "filename"
    when = _sidecar_time(uri)
    return (when, "sidecar") if when is not None else (None, None)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.year < 1971:  # muxers write 1970 or 1904 when no time was set
        return None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


_STRPTIME_REGEX = {"Y": r"\d{4}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}", "M": r"\d{2}", "S": r"\d{2}",
                   "y": r"\d{2}", "j": r"\d{3}", "f": r"\d{1,6}", "z": r"[+-]\d{4}", "%": "%"}


def _time_in_name(name: str, pattern: str) -> datetime | None:
    regex = re.sub(r"%(.)", lambda m: _STRPTIME_REGEX.get(m.group(1), ".+?"), re.escape(pattern).replace("\\%", "%"))
    for match in re.finditer(regex, name):
        try:
            when = datetime.strptime(match.group(0), pattern)
        except ValueError:
            continue
        return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    return None


def _sidecar_time(uri: str) -> datetime | None:
    sidecar = uri.rsplit(".", 1)[0] + ".json" if "." in uri.rsplit("/", 1)[-1] else uri + ".json"
    try:
        data = json.loads(storage.read_bytes(sidecar))
    except Exception:  # noqa: BLE001 - no sidecar, or not one of ours
        return None
    return _parse_time(data.get("recorded_at")) if isinstance(data, dict) else None
