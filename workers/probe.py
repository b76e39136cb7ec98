"""Probing a video in a Ray worker, with a time limit.

The probe demuxes the whole file to index its keyframes: a huge, slow or hostile file costs a
worker's memory and time, never the driver's, and a probe past its limit is stopped by ending
the worker process that runs it.
"""

from __future__ import annotations

import os

import ray
from ray.exceptions import GetTimeoutError, RayTaskError

from videolake.pipeline.decode import VideoInfo, probe
from videolake.pipeline.errors import TimedOut, VideolakeError
from videolake.pipeline.storage import forwarded_env

__all__ = ["probe_in_worker"]


@ray.remote(num_cpus=0, max_retries=0)  # no CPU reserved: the actors hold the cores; a probe mostly reads
def _probe(uri: str, max_pixels: int, max_duration_s: float, storage_env: dict[str, str]) -> VideoInfo:
    os.environ.update(storage_env)  # bucket endpoint and credentials from the driver, as for the actors
    return probe(uri, max_pixels=max_pixels, max_duration_s=max_duration_s)


def probe_in_worker(uri: str, max_pixels: int, max_duration_s: float, timeout_s: float) -> VideoInfo:
    """``probe`` in a Ray worker of the connected Ray; ``TimedOut`` after ``timeout_s`` (the worker is ended).

    Raises what ``probe`` raises (``SourceError``, ``DecodeError``, ``StorageError``).
    """
    ref = _probe.remote(uri, max_pixels, max_duration_s, forwarded_env())
    try:
        return ray.get(ref, timeout=timeout_s)
    except GetTimeoutError:
        ray.cancel(ref, force=True)
        raise TimedOut(f"{uri}: probing took longer than {timeout_s:.0f} s") from None
    except RayTaskError as exc:
        if isinstance(exc.cause, VideolakeError):
            raise exc.cause from None
        raise
