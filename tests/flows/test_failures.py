"""The error kind a call that failed for good leaves in the lake, and whether later runs skip the video for it."""

import pytest

from videolake.flows.analyze import _failure
from videolake.pipeline.errors import DecodeError, ShardTimeout, SourceError, StorageError, WorkerLost
from videolake.pipeline.ledger import QUARANTINE_KINDS


@pytest.mark.parametrize(
    "exc, fallback, kind, quarantined",
    [
        (SourceError("gone"), "worker", "source", True),
        (DecodeError("not a video"), "worker", "decode", True),
        (ShardTimeout("shard 0 ran past the 1 s limit"), "worker", "timeout", True),
        (WorkerLost("worker died while shard 0"), "worker", "worker", True),  # on every attempt: the video's bytes, likely
        (StorageError("s3://b/v.mp4: cannot read"), "worker", "storage", False),  # the bucket's fault: a later run tries again
        (StorageError("s3://b/v.mp4: cannot read"), "internal", "storage", False),
        (RuntimeError("boom"), "internal", "internal", False),
    ],
)
def test_a_failed_call_is_recorded_with_its_kind(exc, fallback, kind, quarantined):
    got, message = _failure(exc, attempts=3, kind=fallback)
    assert got == kind and (got in QUARANTINE_KINDS) == quarantined
    assert str(exc) in message
