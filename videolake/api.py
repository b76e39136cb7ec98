"""The Python API: the same paths as the command line, as functions.

    import videolake

    summary = videolake.analyze(["videos/"], "lake", analysis_fps=4)        # like `videolake run`
    result = videolake.analyze_video("clip.mp4")                             # in memory: no lake, Prefect or Ray
    result.clips.to_pandas()
    with videolake.open_lake("lake") as lake:                                # like `videolake query/render/report`
        lake.sql("FROM action_episodes WHERE action = 'falling'").df()
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from videolake.pipeline.analyze import VideoResult
from videolake.pipeline.config import RunConfig, load_config_file
from videolake.pipeline.sources import Identities
from videolake.pipeline.runs import RunSummary

if TYPE_CHECKING:
    import duckdb

    from videolake.pipeline.render import RenderResult
    from videolake.pipeline.report import ReportResult

__all__ = ["analyze", "analyze_video", "open_lake", "LakeReader"]


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

    _use_storage_options(storage_options)
    sources = [os.fspath(sources)] if isinstance(sources, (str, os.PathLike)) else [os.fspath(s) for s in sources]
    base = config if isinstance(config, RunConfig) else load_config_file(config) if config is not None else RunConfig()
    cfg = base.merged(options)
    started_at, t0 = datetime.now(timezone.utc), time.perf_counter()
    # bad sources, models or lake fail here, before Prefect and Ray start; the flow's listing reuses this one's keys
    plan = plan_run(sources, lake, cfg, remember_keys=True)
    work = triage(plan.sources, plan.lake.state(plan.config_hash, plan.sources), retry_failed)
    if work.todo:
        from videolake.flows.analyze import run_analysis

        # The flow lists the sources again: this listing is not kept beside it for the whole run.
        plan, work = replace(plan, sources=[], known=Identities()), None
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


def open_lake(lake: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> LakeReader:
    """The lake at a folder or bucket URL, opened for reading (``NotALakeError`` when there is none)."""
    from videolake.pipeline.query import connect

    _use_storage_options(storage_options)
    url = os.fspath(lake)
    return LakeReader(url, connect(url))


class LakeReader:
    """A lake opened for reading, as it was when opened (``refresh`` sees later commits).

    ``sql`` and ``table`` return DuckDB relations over the lake's views (``videolake query
    LAKE`` lists them): ``.df()``, ``.pl()``, ``.arrow()``, or more SQL on top. Close it,
    or use it as a context manager.
    """

    def __init__(self, url: str, connection: duckdb.DuckDBPyConnection) -> None:
        self.url = url
        self._con = connection

    def sql(self, query: str) -> duckdb.DuckDBPyRelation:
        """A query over the lake's views, e.g. ``"FROM clips WHERE action = 'sitting'"``."""
        return self._con.sql(query)

    def table(self, name: str) -> duckdb.DuckDBPyRelation:
        """One view by name: ``detections``, ``clips``, ``videos``, ``tracks``, ``runs``, ``action_episodes``..."""
        from videolake.pipeline.errors import ConfigError
        from videolake.pipeline.query import VIEWS

        if name not in VIEWS:
            raise ConfigError(f"no table {name!r} in the lake; its tables: {', '.join(VIEWS)}")
        return self._con.table(name)

    def render(self, video_id: str, out: str | os.PathLike[str], t_start_s: float = 0.0, t_end_s: float | None = None,
               config_hash: str | None = None) -> RenderResult:
        """An annotated H.264 clip of the video from the lake's rows, like ``videolake render``."""
        from videolake.pipeline.render import render_clip

        return render_clip(self._con, video_id, out, t_start_s, t_end_s, config_hash)

    def report(self, out: str | os.PathLike[str], keyframes: int = 3, bucket_s: float | None = None) -> ReportResult:
        """A static HTML report in the folder ``out``, like ``videolake report``."""
        from videolake.pipeline.report import write_report

        return write_report(self._con, Path(out), keyframes, bucket_s)

    def refresh(self) -> None:
        """See what was committed since the lake was opened."""
        from videolake.pipeline.query import connect

        self._con.close()
        self._con = connect(self.url)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> LakeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        from videolake.pipeline.storage import redact

        return f"LakeReader({redact(self.url)!r})"


def _use_storage_options(storage_options: Mapping[str, Any] | None) -> None:
    if storage_options is not None:
        from videolake.pipeline.storage import set_storage_options

        set_storage_options(json.dumps(dict(storage_options)))
