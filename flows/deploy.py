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

import zoneinfo

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Interval

from videolake.flows.analyze import analyze
from videolake.pipeline.config import RunConfig
from videolake.pipeline.errors import ConfigError

__all__ = ["analysis_deployment", "make_schedule", "serve_deployment"]


def analysis_deployment(
    sources: list[str], lake: str, config: RunConfig, *, name: str = "videolake-analyze",
    cron: str | None = None, interval_s: float | None = None, timezone: str = "UTC",
) -> RunnerDeployment:
    """The deployment: parameters, one schedule, and at most one run at a time."""
    schedule = make_schedule(cron, interval_s, timezone) if cron or interval_s else None
    return analyze.to_deployment(
        name=name,
        parameters={"sources": sources, "lake": lake, "config": config.to_dict(), "show_progress": False},
        schedules=[schedule] if schedule else None,
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description=f"videolake: analyse what is new under {', '.join(sources)} into {lake}",
        tags=["videolake"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def make_schedule(cron: str | None, interval_s: float | None, timezone: str = "UTC") -> Cron | Interval:
    """The schedule of ``--cron`` (in ``timezone``) or ``--interval``; ``ConfigError`` naming what is wrong."""
    if (cron is None) == (interval_s is None):
        raise ConfigError("give exactly one of --cron and --interval")
    if interval_s is not None and interval_s <= 0:
        raise ConfigError(f"--interval must be > 0 seconds, got {interval_s:g}")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--timezone must be an IANA time zone such as Europe/Paris, got {timezone!r}") from None
    try:
        return Cron(cron, timezone=timezone) if cron is not None else Interval(interval_s)
    except ValueError as exc:  # pydantic's ValidationError is one: several lines, the first says what
        first = next((line.strip() for line in str(exc).splitlines() if "Invalid" in line or "invalid" in line),
                     str(exc).splitlines()[0])
        raise ConfigError(f"bad schedule (--cron {cron!r}, --timezone {timezone!r}): {first}") from None


def serve_deployment(sources: list[str], lake: str, config: RunConfig, **schedule) -> None:  # noqa: ANN003
    """Register the deployment with the Prefect API and run its scheduled runs here until stopped."""
    from prefect import serve

    serve(analysis_deployment(sources, lake, config, **schedule))
