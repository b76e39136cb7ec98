"""Everything a run needs settled before any video is touched: sources, models, lake, config hash.

The CLI calls ``plan_run`` first so bad arguments fail in a second with one line; the flow
calls it again (deployments start there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from videolake.pipeline import storage
from videolake.pipeline.config import RunConfig
from videolake.pipeline.errors import ConfigError
from videolake.pipeline.lake import check_writable
from videolake.pipeline.models import ModelInfo, resolve_actions, resolve_detector, resolve_pose
from videolake.pipeline.sources import VideoSource, check_reachable, discover

__all__ = ["RunPlan", "plan_run"]


@dataclass(frozen=True)
class RunPlan:
    config: RunConfig
    sources: list[VideoSource]
    detector: ModelInfo
    actions: ModelInfo
    lake: str
    config_hash: str
    pose: ModelInfo | None = None  # None: no top-down pose (box-only, or a pose model as the detector)


def plan_run(sources: Sequence[str | os.PathLike[str]], lake: str | os.PathLike[str], config: RunConfig,
             list_sources: bool = True) -> RunPlan:
    """Raises ``ConfigError``, ``SourceError``, ``ModelError`` or ``LakeError`` naming what is wrong.

    A source or lake URL that carries a credential (``user:password@``, a signature) is a ``ConfigError``.

    ``list_sources=False`` only checks that each source's path or bucket exists (the CLI's check
    before the flow starts; the flow lists them); the plan then has no sources.
    """
    for url in [*map(os.fspath, sources), os.fspath(lake)]:
        if storage.has_credentials(url):  # it would be stored in the lake, the logs and the run's Prefect parameters
            raise ConfigError(f"{storage.redact(url)}: a URL must not carry credentials; give them through "
                              "--storage-options or the environment (docs/buckets-and-schedules.md)")
    if list_sources:
        found = discover(sources)
    else:
        check_reachable(sources)
        found = []
    detector, actions, pose = resolve_detector(config.detector), resolve_actions(config.actions), resolve_pose(config.pose)
    lake = storage.normalize(lake)
    check_writable(lake)
    config_hash = config.config_hash(detector.sha256, actions.sha256, pose.sha256 if pose else None)
    return RunPlan(config, found, detector, actions, lake, config_hash, pose)
