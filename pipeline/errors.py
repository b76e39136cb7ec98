"""One exception tree for videolake.

    VideolakeError
    ├── ConfigError   bad arguments or configuration (exit code 2 at the CLI)
    ├── SourceError   a video source cannot be found, listed or opened
    ├── DecodeError   a video opened but its content cannot be decoded
    ├── ModelError    a detector or action model cannot be found or loaded
    ├── LakeError     the lake cannot be written or read
    └── StorageError  a bucket call still failed after its retries (timeouts, 5xx, throttling)

Per-video problems (``SourceError``, ``DecodeError``) never stop a run: the video is
recorded with ``status='failed'`` and the message. The others stop the run with a
one-line error. A ``StorageError`` in a shard fails that shard's attempt, which the flow
sends again; it never quarantines the video.
"""

from __future__ import annotations

__all__ = ["VideolakeError", "ConfigError", "SourceError", "DecodeError", "ModelError", "LakeError", "StorageError"]


class VideolakeError(Exception):
    """Base class of every error videolake raises on purpose."""


class ConfigError(VideolakeError, ValueError):
    """Bad arguments or configuration."""


class SourceError(VideolakeError):
    """A video source cannot be found, listed or opened."""


class DecodeError(VideolakeError):
    """A video opened but its content cannot be decoded."""


class ModelError(VideolakeError):
    """A detector or action model cannot be found or loaded."""


class LakeError(VideolakeError):
    """The lake cannot be written or read."""


class StorageError(VideolakeError):
    """A storage call still failed after its retries; worth trying again later."""
