"""A run's bookkeeping: which videos need work, the summary a run prints and its ``runs`` row.

Shared by the ``analyze`` flow and by ``videolake run``, which settles here, before Prefect or
Ray start, whether there is anything to do at all.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from videolake.pipeline.ledger import LakeState, moved
from videolake.pipeline.models import action_classes
from videolake.pipeline.plan import RunPlan
from videolake.pipeline.sources import VideoSource
from videolake.pipeline.stitch import VideoOutcome

if TYPE_CHECKING:
    from videolake.pipeline.analyze import ShardResult

__all__ = ["RunSummary", "Triage", "triage", "write_run_record"]


@dataclass(frozen=True)
class Triage:
    """The sources of a run, sorted by what the lake already holds."""

    todo: list[VideoSource]
    done_before: list[VideoSource]
    quarantined: list[tuple[VideoSource, str]]  # with the failure that put each one there


def triage(sources: list[VideoSource], state: LakeState, retry_failed: bool = False) -> Triage:
    """Finished videos are skipped; quarantined ones too, unless ``retry_failed``."""
    todo, done, quarantined = [], [], []
    for source in sources:
        reason = state.quarantine_reason(source)
        if state.is_done(source):
            done.append(source)
        elif reason and not retry_failed:
            quarantined.append((source, reason))
        else:
            todo.append(source)
    return Triage(todo, done, quarantined)


@dataclass
class RunSummary:
    run_id: str
    lake: str
    config_hash: str
    videos_ok: int = 0
    videos_failed: int = 0
    videos_done_before: int = 0
    videos_quarantined: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    shards_total: int = 0
    shards_done_before: int = 0
    shards_processed: int = 0
    shards_failed: int = 0
    frames_analyzed: int = 0
    n_detections: int = 0
    n_tracks: int = 0
    clips_by_action: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    workers: int = 0
    features: str | None = None  # "pose" or "box": what the action model saw (from the shards that ran)
    frames_processed: int = 0  # frames analysed by the shards this run processed (frames_analyzed also counts earlier runs')
    frames_detected: int = 0  # of those, the frames the detector saw (the motion gate carried the rest)
    moved: list[VideoSource] = field(default_factory=list)  # finished before, found at a new path
    alerts_by_action: dict[str, int] = field(default_factory=dict)  # episodes of ``ALERT_ACTIONS`` (an event each)

    @classmethod
    def start(cls, run_id: str, plan: RunPlan, work: Triage) -> RunSummary:
        return cls(run_id=run_id, lake=plan.lake.url, config_hash=plan.config_hash, videos_done_before=len(work.done_before),
                   videos_quarantined=len(work.quarantined),
                   quarantined=[(source.uri, reason) for source, reason in work.quarantined],
                   moved=moved(work.done_before, plan.known))

    @property
    def frames_per_s(self) -> float:
        return self.frames_analyzed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def detector_fraction(self) -> float | None:
        """Share of the frames this run analysed that went through the detector (None: it analysed none)."""
        return self.frames_detected / self.frames_processed if self.frames_processed else None

    def add_shard(self, result: ShardResult) -> None:
        """A shard this run analysed and committed."""
        self.shards_processed += 1
        self.features = result.features or self.features
        self.frames_processed += result.frames_analyzed
        self.frames_detected += result.frames_detected

    def add(self, outcome: VideoOutcome) -> None:
        if outcome.status == "ok":
            self.videos_ok += 1
        else:
            self.videos_failed += 1
            self.failures.append((outcome.uri, outcome.error or "unknown error"))
        self.frames_analyzed += outcome.frames_analyzed
        self.n_detections += outcome.n_detections
        self.n_tracks += outcome.n_tracks
        self.clips_by_action = dict(Counter(self.clips_by_action) + Counter(outcome.clips_by_action))
        self.alerts_by_action = dict(Counter(self.alerts_by_action) + Counter(e.action for e in outcome.episodes))

    def figures(self) -> list[dict[str, str]]:
        """The summary's figures as rows of (figure, value), for a table artifact."""
        values = {
            "lake": self.lake, "config_hash": self.config_hash, "videos ok": self.videos_ok, "videos failed": self.videos_failed,
            "videos already done": self.videos_done_before, "videos quarantined": self.videos_quarantined,
            "shards processed": self.shards_processed, "shards failed": self.shards_failed,
            "shards already done": self.shards_done_before, "frames analysed": self.frames_analyzed,
            "frames through the detector": self.frames_detected, "detections": self.n_detections, "tracks": self.n_tracks,
            **{f"clips {a}": n for a, n in sorted(self.clips_by_action.items())},
            **{f"{a} episodes": n for a, n in sorted(self.alerts_by_action.items())},
            "wall time (s)": round(self.wall_s, 1), "frames per second": round(self.frames_per_s, 1), "workers": self.workers,
        }
        return [{"figure": k, "value": str(v)} for k, v in values.items()]

    def lines(self) -> list[str]:
        new = self.videos_ok + self.videos_failed
        out = [
            f"run {self.run_id} → {self.lake} (config {self.config_hash})",
            f"videos: {self.videos_ok} ok, {self.videos_failed} failed; {new} new, {self.videos_done_before} already done"
            + (f" ({len(self.moved)} at a new path)" if self.moved else "")
            + (f", {self.videos_quarantined} quarantined" if self.videos_quarantined else ""),
            f"shards: {self.shards_processed} processed, {self.shards_failed} failed, "
            f"{self.shards_done_before} already done, {self.shards_total} in all",
            f"frames analysed: {self.frames_analyzed}  detections: {self.n_detections}  tracks: {self.n_tracks}",
            *([f"detector: {self.frames_detected} of the {self.frames_processed} frames analysed now ({self.detector_fraction:.0%}"
               + ("; the motion gate carried the rest)" if self.frames_detected < self.frames_processed else ")")]
              if self.frames_processed else []),
            "clips: " + (", ".join(f"{a} {n}" for a, n in sorted(self.clips_by_action.items(), key=lambda kv: -kv[1])) or "none")
            + {"pose": "  (actions from poses)", "box": "  (actions from boxes only: no pose model)"}.get(self.features or "", ""),
            f"wall time: {self.wall_s:.1f} s  ({self.frames_per_s:.1f} frames/s on {self.workers} worker(s))",
        ]
        if self.alerts_by_action:
            out.append("alerts: " + ", ".join(f"{n} {a} episode(s)" for a, n in sorted(self.alerts_by_action.items()))
                       + " (see the action_episodes view)")
        out += [f"failed: {uri}: {error.removeprefix(uri + ': ')}" for uri, error in self.failures]
        out += [f"quarantined (use --retry-failed): {uri}: {error.removeprefix(uri + ': ')}" for uri, error in self.quarantined]
        return out


def write_run_record(plan: RunPlan, summary: RunSummary, started_at: datetime) -> None:
    """The run's row in the ``runs`` table (its settings, models and counts), and the new paths of moved videos."""
    plan.lake.record_paths(summary.moved)
    plan.lake.commit_run({
        "run_id": summary.run_id, "started_at": started_at, "finished_at": datetime.now(timezone.utc),
        "config": json.dumps(plan.config.to_dict(), sort_keys=True), "config_hash": plan.config_hash,
        "detector": plan.detector.name, "detector_sha256": plan.detector.sha256,
        "action_model": plan.actions.name, "action_model_sha256": plan.actions.sha256,
        "action_classes": list(action_classes(plan.actions.path)),
        "pose_model": plan.pose.name if plan.pose else None, "pose_model_sha256": plan.pose.sha256 if plan.pose else None,
        "features": summary.features,
        "videos_ok": summary.videos_ok, "videos_failed": summary.videos_failed,
        "videos_done_before": summary.videos_done_before, "videos_quarantined": summary.videos_quarantined,
        "shards_total": summary.shards_total, "shards_done_before": summary.shards_done_before,
        "shards_processed": summary.shards_processed, "shards_failed": summary.shards_failed,
        "frames_analyzed": summary.frames_analyzed, "wall_s": summary.wall_s,
        "frames_detected": summary.frames_detected, "detector_fraction": summary.detector_fraction,
    })
