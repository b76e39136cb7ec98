"""Everything a run needs settled before any video is touched: sources, models, lake, config hash.

The CLI calls ``plan_run`` first so bad arguments fail in a second with one line; the flow
calls it again (deployments start there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Collection, Sequence

from videolake.pipeline import storage
from videolake.pipeline.config import RunConfig
from videolake.pipeline.errors import ConfigError
from videolake.pipeline.lake import Lake, check_writable
from videolake.pipeline.ledger import known_sources
from videolake.pipeline.models import ModelInfo, resolve_actions, resolve_detector, resolve_pose
from videolake.pipeline.sources import Identities, VideoSource, check_reachable, discover

__all__ = ["RunPlan", "plan_run"]


@dataclass(frozen=True)
class RunPlan:
    config: RunConfig
    sources: list[VideoSource]
    detector: ModelInfo
    actions: ModelInfo
    lake: Lake
    config_hash: str
    pose: ModelInfo | None = None  # None: no top-down pose (box-only, or a pose model as the detector)
    known: Identities = field(default_factory=Identities)  # the sources the lake had seen before this run


def plan_run(sources: Sequence[str | os.PathLike[str]], lake: str | os.PathLike[str] | Lake, config: RunConfig,
             list_sources: bool = True, remember_keys: bool = False) -> RunPlan:
    """Raises ``ConfigError``, ``SourceError``, ``ModelError`` or ``LakeError`` naming what is wrong.

    With ``list_sources`` the lake is opened, created when missing or upgraded from the older
    layout, and the sources are listed and identified. ``list_sources=False`` only checks that
    each source's path or bucket exists and that the lake can be written (``serve``'s check
    before its first run); the plan then has no sources. ``remember_keys``: a flow in this process lists
    the same sources next, and takes their content keys from this listing (``discover``'s ``remember``).

    A source or lake URL that carries a credential (``user:password@``, a signature) is a ``ConfigError``.
    """
    lake_url = lake.url if isinstance(lake, Lake) else os.fspath(lake)
    for url in [*map(os.fspath, sources), lake_url]:
        if storage.has_credentials(url):  # it would be stored in the lake, the logs and the run's Prefect parameters
            raise ConfigError(f"{storage.redact(url)}: a URL must not carry credentials; give them through "
                              "--storage-options or the environment (docs/buckets-and-schedules.md)")
    check_reachable(sources)
    detector, actions, pose = resolve_detector(config.detector), resolve_actions(config.actions), resolve_pose(config.pose)
    config_hash = config.config_hash(detector.sha256, actions.sha256, pose.sha256 if pose else None)
    if not list_sources:
        opened = lake if isinstance(lake, Lake) else Lake(lake)
        check_writable(opened.url)
        return RunPlan(config, [], detector, actions, opened, config_hash, pose=pose)
    opened = lake if isinstance(lake, Lake) else Lake.open_or_create(lake)
    known = Identities()  # what the lake knows of the listed paths and contents, for the run's summary (moved files)

    def lookup(uris: Collection[str], content_keys: Collection[str]) -> Identities:
        found = known_sources(opened, uris, content_keys)
        known.by_version.update(found.by_version)
        known.by_content.update(found.by_content)  # the contents' read comes last: the latest path of each wins
        return known

    found = discover(sources, known=lookup, camera_pattern=config.camera_pattern, remember=remember_keys)
    return RunPlan(config, found, detector, actions, opened, config_hash, pose=pose, known=known)
