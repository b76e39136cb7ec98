"""Which sources a run takes on, from what the lake holds: pure, before Prefect or Ray start."""

from videolake.pipeline.ledger import LakeState
from videolake.pipeline.runs import triage
from videolake.pipeline.sources import VideoSource


def _source(name: str, content_key: str = "k1") -> VideoSource:
    return VideoSource(f"/videos/{name}.mp4", f"{name}-id", 100, content_key)


def test_finished_videos_are_skipped_quarantined_ones_wait_for_retry_failed_and_a_changed_file_is_new():
    done, broken, new, replaced = _source("done"), _source("broken"), _source("new"), _source("replaced", "k2")
    state = LakeState(
        finished_ok={(done.video_id, "k1"), (replaced.video_id, "k1")},  # "replaced": the same id with older content
        quarantined={(broken.video_id, "k1"): "broken.mp4: no frame could be decoded"},
    )
    sources = [done, broken, new, replaced]

    work = triage(sources, state)
    assert work.todo == [new, replaced]
    assert work.done_before == [done]
    assert work.quarantined == [(broken, "broken.mp4: no frame could be decoded")]

    retried = triage(sources, state, retry_failed=True)
    assert retried.todo == [broken, new, replaced] and retried.quarantined == []


def test_nothing_to_do_when_every_source_is_finished_or_quarantined():
    done, broken = _source("done"), _source("broken")
    state = LakeState(finished_ok={(done.video_id, "k1")}, quarantined={(broken.video_id, "k1"): "bad"})
    assert triage([done, broken], state).todo == []
    assert triage([], state).todo == []


def test_the_summary_says_what_share_of_the_frames_the_detector_saw():
    from videolake.pipeline.analyze import ShardResult
    from videolake.pipeline.runs import RunSummary

    summary = RunSummary("r1", "lake", "cfg")
    assert summary.detector_fraction is None and not any(line.startswith("detector:") for line in summary.lines())
    summary.add_shard(ShardResult("v", 0, "ok", frames_analyzed=480, frames_detected=60, features="pose"))
    summary.add_shard(ShardResult("v", 1, "ok", frames_analyzed=120, frames_detected=120, features="pose"))
    assert (summary.shards_processed, summary.frames_processed, summary.frames_detected) == (2, 600, 180)
    assert summary.detector_fraction == 0.3 and summary.features == "pose"
    assert "detector: 180 of the 600 frames analysed now (30%; the motion gate carried the rest)" in summary.lines()
    full = RunSummary("r2", "lake", "cfg")
    full.add_shard(ShardResult("v", 0, "ok", frames_analyzed=8, frames_detected=8))
    assert "detector: 8 of the 8 frames analysed now (100%)" in full.lines()
