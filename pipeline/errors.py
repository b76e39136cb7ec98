"""One exception tree for videolake.

    VideolakeError
    ├── ConfigError   bad arguments or configuration (exit code 2 at the CLI)
    ├── SourceError   a video source cannot be found, listed or opened
    ├── DecodeError   a video opened but its content cannot be decoded
    ├── ModelError    a detector or action model cannot be found or loaded
    ├── LakeError     the lake cannot be written or read
    │   └── NotALakeError  the folder or prefix holds no lake (also a ConfigError: exit code 2)
    ├── StorageError  a bucket call still failed after its retries (timeouts, 5xx, throttling)
    ├── TimedOut      a video's probe or shard ran past its time limit
    │   └── ShardTimeout  a shard did (its worker was restarted to stop it)
    ├── WorkerLost    the worker running a call died (Ray restarts it; the call can be sent again)
    └── PrefectServerError  the temporary Prefect server of a run did not start

Per-video problems (``SourceError``, ``DecodeError``) never stop a run: the video is
recorded with ``status='failed'`` and the message. The others stop the run with a
one-line error. A ``StorageError`` in a shard fails that shard's attempt, which the flow
sends again; after the last attempt the video fails with ``error_kind='storage'``, which never
quarantines it. A ``TimedOut`` probe or shard is tried once more; a second one quarantines the
video, as a worker that died on it on every attempt (``WorkerLost``) does.
"""

from __future__ import annotations

__all__ = ["VideolakeError", "ConfigError", "SourceError", "DecodeError", "ModelError", "LakeError", "NotALakeError",
           "StorageError", "TimedOut", "ShardTimeout", "WorkerLost", "PrefectServerError"]


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


class NotALakeError(LakeError, ConfigError):
    """A command that reads a lake was pointed at a folder or prefix that holds none."""


class StorageError(VideolakeError):
    """A storage call still failed after its retries; worth trying again later."""


class TimedOut(VideolakeError):
    """A video's probe or shard ran past its time limit (the work was stopped)."""


class ShardTimeout(TimedOut):
    """A shard ran past its time limit; its actor was restarted to stop it."""


class WorkerLost(VideolakeError):
    """The actor running a call died; the call can be retried on another or a restarted actor."""


class PrefectServerError(VideolakeError):
    """The temporary Prefect server did not start."""
