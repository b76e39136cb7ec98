"""The Python API: the same paths as the command line, as functions.

    import videolake

    summary = videolake.analyze(["videos/"], "lake", analysis_fps=4)        # like `videolake run`
    result = videolake.analyze_video("clip.mp4")                             # in memory: no lake, Prefect or Ray
    result.clips.to_pandas()
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from videolake.pipeline.analyze import VideoResult
from videolake.pipeline.config import RunConfig, load_config_file
from videolake.pipeline.runs import RunSummary

__all__ = ["analyze", "analyze_video"]


def analyze(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    lake: str | os.PathLike[str],
    *,
    config: RunConfig | str | os.PathLike[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    retry_failed: bool = False,
    show_progress: bool = False,
    **options: Any,
) -> RunSummary:
    """Analyse what is new or changed under ``sources`` into ``lake``, exactly as ``videolake run`` does.

    ``options`` are ``run``'s options by their names (``analysis_fps=4``, ``device="cuda"``...),
    over ``config`` (a ``RunConfig`` or a YAML file). With nothing new it records the run and returns
    in about a second; otherwise it starts a temporary Prefect server (unless ``PREFECT_API_URL``
    names one) and a local Ray (unless ``ray_address``/``RAY_ADDRESS`` names a cluster).
    """
    from videolake.pipeline.plan import plan_run
    from videolake.pipeline.runs import triage, write_run_record

    if storage_options is not None:
        from videolake.pipeline.storage import set_storage_options

        set_storage_options(json.dumps(dict(storage_options)))
    sources = [os.fspath(sources)] if isinstance(sources, (str, os.PathLike)) else [os.fspath(s) for s in sources]
    base = config if isinstance(config, RunConfig) else load_config_file(config) if config is not None else RunConfig()
    cfg = base.merged(options)
    started_at, t0 = datetime.now(timezone.utc), time.perf_counter()
    plan = plan_run(sources, lake, cfg)  # bad sources, models or lake fail here, before Prefect and Ray start
    work = triage(plan.sources, plan.lake.state(plan.config_hash, plan.sources), retry_failed)
    if work.todo:
        from videolake.flows.analyze import run_analysis

        return run_analysis(plan, sources, show_progress=show_progress, retry_failed=retry_failed)
    summary = RunSummary.start(str(uuid.uuid4()), plan, work)  # nothing new: recorded without Prefect or Ray
    summary.wall_s = time.perf_counter() - t0
    write_run_record(plan, summary, started_at)
    return summary


def analyze_video(path: str | os.PathLike[str], *, config: RunConfig | None = None, **options: Any) -> VideoResult:
    """One video analysed in this process, into memory, like Ultralytics' ``model.track()``.

    Returns a ``VideoResult`` whose ``detections`` and ``clips`` are Arrow tables with the lake's
    columns (track ids, keypoints, actions). The same settings give the same rows as a lake run of
    a video of up to one shard (``shard_seconds``, 60 s by default).
    """
    from videolake.pipeline.analyze import analyze_video as run_one

    cfg = (config or RunConfig()).merged(options)
    return run_one(os.fspath(path), cfg)
