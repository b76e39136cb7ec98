"""Progress counts only the work left: a resumed run's totals leave out what an earlier run finished."""

import math

import pytest

from videolake.flows import progress as progress_module
from videolake.flows.progress import RunProgress, expected_frames
from videolake.pipeline.decode import VideoInfo
from videolake.pipeline.shards import plan_shards

INFO = VideoInfo("v.mp4", duration_s=60.0, fps=25.0, width=640, height=360, codec="h264", n_frames_estimate=1500,
                 keyframes_s=tuple(float(t) for t in range(0, 60, 2)), keyframe_frame_indices=tuple(range(0, 1500, 50)))


@pytest.mark.parametrize("analysis_fps, expected", [(8.0, 480), (0.0, 1500), (50.0, 1500)])
def test_a_whole_video_s_frames_follow_the_sampling_rate(analysis_fps, expected):
    assert expected_frames(INFO, analysis_fps) == expected


def test_only_the_shards_left_count():
    shards = plan_shards(INFO, 10.0, 2.0)  # 10 s shards; the last runs to the end
    assert len(shards) == 6 and math.isinf(shards[-1].t_end_s)
    assert expected_frames(INFO, 8.0, shards) == expected_frames(INFO, 8.0) == 480
    assert expected_frames(INFO, 8.0, shards[4:]) == 160  # two shards of 10 s left, at 8 frames/s
    assert expected_frames(INFO, 8.0, []) == 0  # every shard committed before: nothing left


def test_a_resumed_run_s_totals_are_the_work_left():
    shards = plan_shards(INFO, 10.0, 2.0)
    with RunProgress(videos_total=2, analysis_fps=8.0, enabled=False, artifact=False) as progress:
        progress.expect(INFO, shards[3:])  # a video killed half way: 3 of its 6 shards left
        progress.expect(INFO, shards)  # a new video
    assert progress.frames_total == 240 + 480


def test_while_videos_are_not_probed_yet_the_frames_to_come_are_estimated_from_those_that_are(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "_LOG_EVERY_S", 0.0)  # a log line at every update
    shards = plan_shards(INFO, 10.0, 2.0)
    with RunProgress(videos_total=100, analysis_fps=8.0, enabled=True, artifact=False) as progress:
        progress.expect(INFO, shards)
        progress.expect(INFO, shards[3:])
        assert progress.frames_total == 480 + 240 and progress.frames_expected == 100 * 360
        progress.update(0, lambda: 0)
    assert "frames 0/about 36000" in capsys.readouterr().err
    with RunProgress(videos_total=2, analysis_fps=8.0, enabled=False, artifact=False) as progress:
        progress.expect(INFO, shards)
        progress.expect(INFO, shards[3:])
    assert progress.frames_expected == progress.frames_total == 720  # every video probed: the count itself
