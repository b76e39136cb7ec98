"""Where bytes live: local paths and fsspec URLs (``s3://``, ``gs://``, ``az://``) behind one set of calls.

Local paths stay plain paths (``file://`` URLs become paths). Anything else goes through
fsspec, with options from the standard credential chains plus ``VIDEOLAKE_STORAGE_OPTIONS``
(JSON, what ``--storage-options`` sets). S3-compatible stores (MinIO, Ceph, R2, moto) take
the standard ``AWS_ENDPOINT_URL``.

Credentials never leave in text: ``redact`` blanks the secret values this process knows and
anything shaped like a credential (see its docstring); every stored or printed error text passes
through it, and ``redact_logs`` puts it on log handlers. URLs that carry credentials are refused
as sources and lakes (``has_credentials``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from videolake.pipeline.errors import ConfigError, LakeError, SourceError, StorageError, VideolakeError

__all__ = [
    "STORAGE_OPTIONS_ENV", "RemoteFile", "is_remote", "normalize", "storage_options", "set_storage_options",
    "filesystem", "arrow_fs", "read_parquet", "join", "open_input", "list_files", "exists", "read_bytes", "write_bytes", "put_file",
    "remove", "remove_files", "local_tmp", "tmp_path_for", "forwarded_env", "redact", "has_credentials", "RedactingFilter",
    "redact_logs", "storage_error",
]

STORAGE_OPTIONS_ENV = "VIDEOLAKE_STORAGE_OPTIONS"
_READ_BLOCK_BYTES = 4 << 20
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}
# Retries on timeouts, 5xx and throttling, by botocore's own retry modes.
_S3_DEFAULTS: dict[str, Any] = {"config_kwargs": {"retries": {"max_attempts": 10, "mode": "standard"},
                                                  "connect_timeout": 10, "read_timeout": 60}}
_SECRET_NAME = re.compile(r"secret|token|password|credential|key$|sas|signature|connection_string|authorization", re.IGNORECASE)
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
               "AZURE_CLIENT_SECRET", "AZURE_STORAGE_CONNECTION_STRING", "GOOGLE_APPLICATION_CREDENTIALS_JSON")


@dataclass(frozen=True)
class RemoteFile:
    """One listed object or file: its URL, size and a version stamp (mtime in ns, or an ETag)."""

    url: str
    size_bytes: int
    version: str


def is_remote(url: str | os.PathLike[str]) -> bool:
    text = os.fspath(url)
    return "://" in text and not text.startswith("file://")


def normalize(url: str | os.PathLike[str]) -> str:
    """``file://`` URLs and ``~`` become absolute local paths; remote URLs lose a trailing slash."""
    text = os.fspath(url)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if is_remote(text):
        return text.rstrip("/")
    return str(Path(text).expanduser().absolute())


def protocol(url: str) -> str:
    return url.split("://", 1)[0].lower() if is_remote(url) else "file"


def storage_options(url: str | None = None) -> dict[str, Any]:
    """Options for ``url``'s filesystem: defaults for its protocol, then ``VIDEOLAKE_STORAGE_OPTIONS``."""
    raw = os.environ.get(STORAGE_OPTIONS_ENV, "").strip()
    try:
        given = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{STORAGE_OPTIONS_ENV} is not valid JSON (at character {exc.pos})") from None
    if not isinstance(given, dict):
        raise ConfigError(f"{STORAGE_OPTIONS_ENV} must be a JSON object")
    if url is not None and _EXTRAS.get(protocol(url)) == "s3":
        merged = {**_S3_DEFAULTS, **given}
        if "config_kwargs" in given:
            merged["config_kwargs"] = {**_S3_DEFAULTS["config_kwargs"], **given["config_kwargs"]}
        return merged
    return given


def set_storage_options(options: dict[str, Any] | str | None) -> None:
    """Set the options for this process and the processes it starts (``--storage-options``)."""
    if options is None:
        return
    text = options if isinstance(options, str) else json.dumps(options)
    try:
        valid = isinstance(json.loads(text), dict)
    except json.JSONDecodeError as exc:  # the message never echoes the text: it may hold a secret
        raise ConfigError(f"--storage-options is not valid JSON (at character {exc.pos})") from None
    if not valid:
        raise ConfigError("--storage-options must be a JSON object")
    os.environ[STORAGE_OPTIONS_ENV] = text


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem for ``url`` and the path inside it (fsspec caches the instances)."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **storage_options(url))
    except ImportError:
        extra = _EXTRAS.get(protocol(url), protocol(url))
        raise ConfigError(f"{redact(url)}: this storage needs an extra package: pip install 'videolake[{extra}]'") from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise ConfigError(f"{redact(url)}: unknown storage protocol {protocol(url)!r}") from None
        raise


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return "/".join([base.rstrip("/"), *parts])
    return os.path.join(base, *parts)


def _url(fs: Any, path: str, like: str) -> str:
    return fs.unstrip_protocol(path) if is_remote(like) else path


def open_input(url: str) -> IO[bytes]:
    """A seekable binary file: local, or remote with read-ahead (ranged GETs, nothing copied whole)."""
    if not is_remote(url):
        return open(url, "rb")  # noqa: SIM115 - the caller closes it
    fs, path = filesystem(url)
    try:
        return fs.open(path, "rb", block_size=_READ_BLOCK_BYTES, cache_type="readahead")
    except Exception as exc:  # noqa: BLE001 - turned into our error tree with a clean message
        raise storage_error(url, exc, "cannot open", SourceError) from None


def list_files(url: str, pattern: bool = False) -> list[RemoteFile]:
    """Every file under ``url`` (recursive) or matching a glob ``url``, with size and version."""
    fs, path = filesystem(url)
    try:
        if pattern:
            entries = fs.glob(path, detail=True)
        elif fs.isfile(path):
            entries = {path: fs.info(path)}
        else:
            entries = fs.find(path, detail=True)
    except FileNotFoundError:
        return []
    out = []
    for name, info in sorted(entries.items()):
        if info.get("type", "file") != "file":
            continue
        version = info.get("ETag") or info.get("etag") or info.get("generation") or info.get("mtime") or info.get("LastModified") or ""
        if isinstance(version, float):
            version = int(version * 1e9)
        out.append(RemoteFile(_url(fs, name, url), int(info.get("size") or 0), str(version).strip('"')))
    return out


def arrow_fs(url: str) -> tuple[Any, str]:
    """A pyarrow filesystem (``None`` for local files) and the path to hand it, for pyarrow readers."""
    if not is_remote(url):
        return None, url
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, path = filesystem(url)
    return PyFileSystem(FSSpecHandler(fs)), path


def read_parquet(url: str, columns: list[str] | None = None) -> Any:
    """One Parquet file as an Arrow table; ``None`` when it does not exist.

    ``ParquetFile``, not ``read_table``: no dataset is built for one file (a staged shard file is read
    in a third of the time)."""
    fs, path = arrow_fs(url)
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path, filesystem=fs) as f:
            return f.read(columns=columns)
    except FileNotFoundError:
        return None


def exists(url: str) -> bool:
    if not is_remote(url):
        return os.path.exists(url)
    fs, path = filesystem(url)
    return fs.exists(path)


def read_bytes(url: str) -> bytes:
    if not is_remote(url):
        return Path(url).read_bytes()
    fs, path = filesystem(url)
    return fs.cat_file(path)


def write_bytes(url: str, data: bytes) -> None:
    """Atomic: readers see the old object or the new one, never part of one."""
    with local_tmp(url) as tmp:
        Path(tmp).write_bytes(data)
        put_file(tmp, url)


def tmp_path_for(url: str) -> str:
    """A temporary local file name for building ``url``'s content: beside it when local, so the
    final rename is atomic; in the private scratch folder when remote (one PUT is atomic per object).
    The name says which process writes it, so a killed run's files are swept (``scratch.sweep_leftovers``)."""
    from videolake.pipeline.scratch import process_tag, scratch_dir

    name = f"_tmp-{process_tag()}-{uuid.uuid4().hex[:12]}-{os.path.basename(url)}.inprogress"
    if is_remote(url):
        return os.path.join(scratch_dir(), name)
    os.makedirs(os.path.dirname(url) or ".", exist_ok=True)
    return os.path.join(os.path.dirname(url), name)


@contextlib.contextmanager
def local_tmp(url: str) -> Iterator[str]:
    """``tmp_path_for(url)``, removed afterwards if still there."""
    tmp = tmp_path_for(url)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def put_file(local_path: str, url: str) -> None:
    """Move a finished local file to ``url`` in one step."""
    if not is_remote(url):
        os.replace(local_path, url)
        return
    fs, path = filesystem(url)
    try:
        fs.put_file(local_path, path)
    except Exception as exc:  # noqa: BLE001
        raise storage_error(url, exc, "cannot write") from None


def remove(url: str) -> None:
    if not is_remote(url):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(url)
        return
    fs, path = filesystem(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def remove_files(urls: list[str]) -> None:
    """Remove files (missing ones are fine), then the local folders they leave empty."""
    for url in urls:
        remove(url)
    if urls and not is_remote(urls[0]):
        for folder in sorted({os.path.dirname(u) for u in urls}, reverse=True):
            with contextlib.suppress(OSError):  # not empty: someone is writing there
                os.rmdir(folder)


_FORWARDED_ENV = re.compile(r"^(VIDEOLAKE_STORAGE_OPTIONS|AWS_[A-Z_]+|GOOGLE_APPLICATION_CREDENTIALS|GOOGLE_CLOUD_PROJECT|AZURE_[A-Z_]+|FSSPEC_[A-Z_]+)$")


def forwarded_env() -> dict[str, str]:
    """The storage settings of this process's environment that workers elsewhere need too."""
    return {k: v for k, v in os.environ.items() if _FORWARDED_ENV.match(k)}


def _secrets() -> list[str]:
    """Secret values this process knows of: secret environment variables, secret-named storage options,
    passwords in URLs among the options and the storage environment, and the parts of connection strings."""
    values = [os.environ.get(name, "") for name in _SECRET_ENV]
    strings = list(forwarded_env().values())

    def walk(obj: Any, name: str = "") -> None:
        if isinstance(obj, dict):
            for key, value in obj.items():
                walk(value, str(key))
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                walk(value, name)
        elif isinstance(obj, str):
            strings.append(obj)
            if _SECRET_NAME.search(name):
                values.append(obj)

    with contextlib.suppress(ConfigError):
        walk(storage_options())
    for text in strings + values:
        values += [m.group("value") or m.group("value2") or m.group("value3") or m.group("value4")
                   for m in _CREDENTIAL.finditer(text)]
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


# Credentials in free text, known or not: a password in a URL (scheme://user:PASSWORD@host), a
# secret-named key=value pair (AccountKey=..., sig=..., X-Amz-Signature=..., password=...), a
# secret-named "key": "value" pair (JSON, Python reprs), a Bearer token and an Authorization header.
_SECRET_PAIR_NAME = (r"[\w.-]*(?:secret|token|passw(?:or)?d|pwd|accountkey|accesskey|access_key|signature|credential|"
                     r"api_?key|private_?key|connection_?string|authorization)[\w.-]*|sig|key")
_CREDENTIAL = re.compile(
    r"(?P<url>[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:)(?P<value>[^\s/@'\"]+)(?=@)"
    rf"|(?P<pair>(?<![\w-])(?:{_SECRET_PAIR_NAME})\s*=\s*)(?P<value2>[^\s;&,'\"]+)"
    rf"|(?P<json>[\"'](?:{_SECRET_PAIR_NAME})[\"']\s*:\s*[\"'])(?P<value3>[^\"']+)"
    r"|(?P<scheme>\bbearer\s+|\bauthorization\s*:\s*(?:basic\s+|bearer\s+|token\s+)?)(?P<value4>[a-z0-9._~+/=-]{6,})",
    re.IGNORECASE,
)


def _blank(match: re.Match[str]) -> str:
    prefix = match.group("url") or match.group("pair") or match.group("json") or match.group("scheme") or ""
    return prefix + "***"


def redact(text: str) -> str:
    """``text`` with every credential blanked to ``***``: the values this process knows to be secret
    (environment, storage options, their URLs and connection strings), and anything that has the form of
    one (URL passwords, secret-named ``key=value`` and ``"key": "value"`` pairs, ``Bearer`` tokens)."""
    for secret in _secrets():
        text = text.replace(secret, "***")
    return _CREDENTIAL.sub(_blank, text)


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a credential (a password, a signature, a token): such URLs are refused as
    sources and lakes, because a URL is stored in the lake, the logs and the run's Prefect parameters."""
    return _CREDENTIAL.sub(_blank, url) != url


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record's text, traceback included, through ``redact``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
            record.exc_info = None
        return True


def redact_logs(*loggers: str) -> None:
    """Put a ``RedactingFilter`` on every handler of ``loggers`` (and the root logger's), once."""
    for name in ("", *loggers):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


def storage_error(url: str, exc: BaseException, what: str, kind: type[VideolakeError] = LakeError) -> VideolakeError:
    """One clean error for a failed storage call: names the URL and the cause, never a credential.

    Missing and forbidden are ``kind`` (they fail fast); anything else is a ``StorageError``.
    """
    if isinstance(exc, VideolakeError):
        return exc
    if isinstance(exc, FileNotFoundError):
        reason = "not found (is the bucket or path right?)"
    elif isinstance(exc, PermissionError):
        reason = "access denied (check the credentials and the bucket policy)"
    else:  # timeouts, 5xx, throttling that outlasted the retries: worth another try later
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = StorageError
    return kind(redact(f"{what} {url}: {reason}"))
