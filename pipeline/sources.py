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
from typing import Callable, Collection, Iterable, Iterator

from videolake.pipeline import storage
from videolake.pipeline.config import VIDEO_EXTENSIONS
from videolake.pipeline.errors import SourceError

__all__ = ["VideoSource", "Identities", "KnownLookup", "discover", "check_reachable", "video_id_for", "content_key_for", "fingerprint",
           "camera_id_for", "recorded_at_for", "DEFAULT_TIME_PATTERN", "FINGERPRINT_BYTES"]

FINGERPRINT_BYTES = 1 << 20  # read from the head and from the tail of each new file
DEFAULT_TIME_PATTERN = "%Y%m%d_%H%M%S"
_FINGERPRINT_THREADS = 8
_FINGERPRINT_CHUNK = 256  # files handed to the threads at a time: a future per file of a whole listing is a KB each
# The keys of the last listing made with ``remember=True``, by (uri, size, version): `videolake run` lists
# before its flow starts, and the flow lists again and takes them from here (once).
_FINGERPRINTS: dict[tuple[str, int, str], str] = {}


@dataclass(frozen=True, slots=True)
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


# What the lake knows of some paths and some contents: ``lookup(uris, content_keys)``. ``discover`` asks
# twice (the listed paths, then the contents found), so a run never reads the lake's whole history.
KnownLookup = Callable[[Collection[str], Collection[str]], Identities]


def discover(
    sources: Iterable[str | os.PathLike[str]], extensions: tuple[str, ...] = VIDEO_EXTENSIONS,
    known: Identities | KnownLookup | None = None, camera_pattern: str | None = None, remember: bool = False,
) -> list[VideoSource]:
    """Expand files, folders, bucket prefixes and globs into a sorted list, one entry per content.

    Folders and prefixes are searched recursively and filtered by extension, and so are
    globs (``s3://cams/2026-11-*/**/*.mp4``). A file or object named explicitly is taken
    whatever its extension. A missing path or bucket is an error; an empty prefix is not.
    Files ``known`` at the same path, size and version are not read; the others are
    fingerprinted (``fingerprint``). Copies of one content count once: at the path the lake
    recorded for it, else the first path. ``known`` is what the lake has seen (``Identities``), or a
    ``KnownLookup`` asked for the listed paths, then for the contents found.

    Paths are literal where they exist: ``*``, ``?`` and ``[`` make a glob only of a path that
    does not exist, and then only past its longest existing folder (``cams[1]/*.mp4`` globs
    ``*.mp4`` inside the folder ``cams[1]``). A local file or folder named ``cam[2].mp4`` is that file.

    ``remember=True`` keeps this listing's keys for the next call in this process (``videolake run``
    lists, then its flow lists again): that call takes them and reads none of those files again.
    """
    given = known or Identities()
    lookup: KnownLookup = known if callable(known) else (lambda uris, content_keys: given)
    listed: dict[str, tuple[int, str]] = {}
    for source in sources:
        url = storage.normalize(source)
        for uri, size_bytes, version in (_remote(url, extensions) if storage.is_remote(url) else _local(url, extensions)):
            listed.setdefault(uri, (size_bytes, str(version)))
    by_path = lookup(listed.keys(), ()) if listed else Identities()
    keys: dict[str, str] = {}
    todo = []
    for uri, (size, version) in listed.items():
        key = by_path.by_version.get((uri, size, version))
        if key is not None:
            keys[uri] = key
            continue
        key = _FINGERPRINTS.pop((uri, size, version), None)
        if key is None:
            todo.append(uri)
        else:
            keys[uri] = key
    keys.update(_fingerprints(todo, listed))
    if remember:  # one listing at most, whatever the process does next (``serve`` runs for months)
        _FINGERPRINTS.clear()
        _FINGERPRINTS.update(((uri, *listed[uri]), key) for uri, key in keys.items()
                             if (uri, *listed[uri]) not in by_path.by_version)
    by_content = lookup((), set(keys.values())).by_content if listed else {}
    found: dict[str, VideoSource] = {}
    cameras: dict[str, str] = {}  # one string per camera, not one per video
    for uri in sorted(listed):
        size, version = listed[uri]
        key = keys[uri]
        video_id, recorded_uri = by_content.get(key, (video_id_for(uri, key), None))
        if key in found and found[key].uri == recorded_uri:
            continue
        if key not in found or uri == recorded_uri:
            camera = camera_id_for(uri, camera_pattern)
            found[key] = VideoSource(uri, video_id, size, key, version, camera and cameras.setdefault(camera, camera))
    return sorted(found.values(), key=lambda v: v.uri)


def _fingerprints(uris: list[str], listed: dict[str, tuple[int, str]]) -> Iterator[tuple[str, str]]:
    """(uri, key) of each of ``uris``, read by a few threads, a chunk of files at a time."""
    if not uris:
        return
    with ThreadPoolExecutor(min(_FINGERPRINT_THREADS, len(uris))) as pool:
        for start in range(0, len(uris), _FINGERPRINT_CHUNK):
            chunk = uris[start:start + _FINGERPRINT_CHUNK]
            yield from zip(chunk, pool.map(lambda uri: fingerprint(uri, listed[uri][0]), chunk))


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
    candidates: Iterable[Path]  # walked, not gathered: a Path per file of a large folder is most of a listing's memory
    if path.is_dir():
        candidates = (p for p in path.rglob("*") if p.suffix.lower() in extensions and p.is_file())
    elif path.exists():
        candidates = [path]
    elif _is_glob(url):
        candidates = (Path(p) for p in glob.iglob(_literal_prefix(path), recursive=True)
                      if os.path.splitext(p)[1].lower() in extensions and os.path.isfile(p))
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
