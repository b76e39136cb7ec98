"""What a run tells Prefect besides its logs: an event per alert episode, and the summary as table artifacts.

Events: each ``falling`` or ``lying`` episode (``ALERT_ACTIONS``) of a published video is a Prefect
event named ``videolake.action.<action>``. An automation can match it and notify someone; for example,
a trigger on ``videolake.action.falling`` with a notification action. The event's resource is the
person's track (``videolake.track.<video_id>.<track_id>``). Its labels and payload carry the video,
its camera, the time in the video and on the wall clock, and the confidence. The event is related to
the video, the lake and, through the run's context, the flow run.

Artifacts on the flow run:
- ``videolake-summary``: the run's figures, one row each;
- ``videolake-failures``: the videos that failed, with their reasons (at most ``_MAX_FAILURE_ROWS``; the
  lake's ``failed`` view holds them all).
"""

from __future__ import annotations

from videolake.pipeline.runs import RunSummary
from videolake.pipeline.stitch import ActionEpisode
from videolake.pipeline.storage import redact

__all__ = ["emit_episode_events", "publish_summary", "EVENT_PREFIX"]

EVENT_PREFIX = "videolake.action."
_MAX_FAILURE_ROWS = 1000


def emit_episode_events(episodes: list[ActionEpisode], lake: str, run_id: str) -> None:
    """One Prefect event per episode (sent in the background by Prefect's events worker)."""
    from prefect.events import emit_event

    for ep in episodes:
        labels = {"videolake.video_id": ep.video_id, "videolake.track_id": str(ep.track_id),
                  "videolake.camera_id": ep.camera_id or "", "videolake.action": ep.action}
        emit_event(
            event=f"{EVENT_PREFIX}{ep.action}",
            resource={"prefect.resource.id": f"videolake.track.{ep.video_id}.{ep.track_id}",
                      "prefect.resource.name": f"{redact(ep.uri)} track {ep.track_id}", **labels},
            related=[{"prefect.resource.id": f"videolake.video.{ep.video_id}", "prefect.resource.role": "video",
                      "prefect.resource.name": redact(ep.uri)},
                     {"prefect.resource.id": f"videolake.lake.{redact(lake)}", "prefect.resource.role": "lake"}],
            payload={"video_id": ep.video_id, "uri": redact(ep.uri), "camera_id": ep.camera_id, "track_id": ep.track_id,
                     "action": ep.action, "t_start_s": ep.t_start_s, "t_end_s": ep.t_end_s,
                     "started_at": ep.started_at.isoformat() if ep.started_at else None, "n_clips": ep.n_clips,
                     "mean_confidence": ep.mean_confidence, "max_confidence": ep.max_confidence,
                     "lake": redact(lake), "run_id": run_id},
        )


def publish_summary(summary: RunSummary) -> None:
    """The run's figures and failures as table artifacts on the flow run."""
    from prefect.artifacts import create_table_artifact

    create_table_artifact(key="videolake-summary", table=summary.figures(),
                          description=f"videolake run {summary.run_id} into {redact(summary.lake)}")
    if summary.failures:
        rows = [{"video": redact(uri), "error": error} for uri, error in summary.failures[:_MAX_FAILURE_ROWS]]
        more = len(summary.failures) - len(rows)
        create_table_artifact(key="videolake-failures", table=rows,
                              description=f"{len(summary.failures)} video(s) failed"
                                          + (f"; the first {len(rows)} shown, the lake's `failed` view has all" if more else ""))
