"""Scheduled runs: a Prefect deployment of the ``analyze`` flow, served here or declared for a work pool.

``videolake serve`` builds the deployment with ``analysis_deployment`` and serves it with
Prefect's own runner (``prefect.serve``). ``deploy/prefect/prefect.yaml`` declares the same
deployment (entry point, parameters, schedule, concurrency) for ``prefect deploy`` and a work
pool. Either way:

- each run analyses only what is new or changed under the sources (the lake's ledger says
  what is done), so an empty run lists the bucket, reads no video and ends in seconds;
- runs of one deployment never overlap: the deployment's concurrency limit is 1 and a run
  that would start while another is running is cancelled (the next tick picks its work up);
- a run that dies leaves committed shards in the ledger, which the next run skips.

Credentials are never parameters: they come from the environment of the process that runs
the flow (``--storage-options`` sets ``VIDEOLAKE_STORAGE_OPTIONS`` there).
"""

from __future__ import annotations

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Interval

from videolake.flows.analyze import analyze
from videolake.pipeline.config import RunConfig

__all__ = ["analysis_deployment", "serve_deployment", "ENTRYPOINT"]

ENTRYPOINT = "videolake.flows.analyze.analyze"


def analysis_deployment(
    sources: list[str], lake: str, config: RunConfig, *, name: str = "videolake-analyze",
    cron: str | None = None, interval_s: float | None = None, timezone: str = "UTC",
) -> RunnerDeployment:
    """The deployment: parameters, one schedule, and at most one run at a time."""
    schedule = Cron(cron, timezone=timezone) if cron else Interval(interval_s) if interval_s else None
    return analyze.to_deployment(
        name=name,
        parameters={"sources": sources, "lake": lake, "config": config.to_dict(), "show_progress": False},
        schedules=[schedule] if schedule else None,
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description=f"videolake: analyse what is new under {', '.join(sources)} into {lake}",
        tags=["videolake"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def serve_deployment(sources: list[str], lake: str, config: RunConfig, **schedule) -> None:  # noqa: ANN003
    """Register the deployment with the Prefect API and run its scheduled runs here until stopped."""
    from prefect import serve

    serve(analysis_deployment(sources, lake, config, **schedule))
