"""A run's own local Ray: reachable from this machine only, its files in the user's private scratch folder.

Ray has no bind-address option, and it rewrites ``ray.init(_node_ip_address="127.0.0.1")`` to the
machine's routable address (``ray._private.services.resolve_ip_for_localhost``), so its GCS, raylet,
agents and workers would listen on every interface. Its local-only mode (``ENABLE_RAY_CLUSTER`` off,
what Ray itself uses on macOS and Windows) gives the node 127.0.0.1, and every server binds there.
That mode is set for the ``ray.init`` call (the constant, for this process) and in the environment the
GCS, raylet and workers inherit, then restored. Session folders go under ``scratch.ray_temp_dir()``
(0700, not ``/tmp/ray``) and are removed when the session ends; a killed run's are swept next start.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import ray
from ray._private import ray_constants

from videolake.pipeline.scratch import ray_temp_dir, remove_ray_sessions_of, sweep_leftovers

__all__ = ["start_local_ray", "stop_local_ray", "LOOPBACK_ENV"]

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def start_local_ray(**init: Any) -> None:
    """``ray.init(address="local", **init)`` on loopback, with its session folder in the scratch folder."""
    sweep_leftovers()
    with _loopback_only():
        ray.init(address="local", _temp_dir=str(ray_temp_dir()), **init)


def stop_local_ray() -> None:
    """``ray.shutdown()``, and remove the session folder this process's Ray wrote."""
    ray.shutdown()
    remove_ray_sessions_of(os.getpid())


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    saved_env, saved_flag = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = saved_env
