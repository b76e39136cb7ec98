import os

import pyarrow as pa
import pytest

from videolake.pipeline.stitch import _match

A, B = (0.0, 0.0, 10.0, 10.0), (100.0, 0.0, 110.0, 10.0)  # two people far apart
NEAR_A = (1.0, 0.0, 11.0, 10.0)  # IoU with A: 90 / 110 = 0.82
HALF_A = (5.0, 0.0, 15.0, 10.0)  # IoU with A: 50 / 150 = 0.33


def _tracks(**boxes_by_id: tuple[tuple[float, ...], list[float]]) -> pa.Table:
    """A tracked detections table: ``t<raw id>=(box, times)``."""
    rows = [(t, int(key[1:]), *box) for key, (box, times) in boxes_by_id.items() for t in times]
    return pa.table(dict(zip(["t_s", "track_id", "x1", "y1", "x2", "y2"], map(list, zip(*rows)))))


@pytest.mark.parametrize(
    "warmup, expected",
    [
        # each warm-up track continues the previous track it overlaps, whatever the order of its ids
        (dict(t1000001=(B, [1.0, 1.1, 1.2]), t1000002=(NEAR_A, [1.0, 1.1, 1.2])), [(1, 1000002), (2, 1000001)]),
        # one shared frame is too few
        (dict(t1000001=(A, [1.2, 1.3])), []),
        # boxes that overlap too little
        (dict(t1000001=(HALF_A, [1.0, 1.1, 1.2])), []),
        # one to one: the better of two candidates for the same previous track
        (dict(t1000001=(NEAR_A, [1.0, 1.1]), t1000002=(A, [1.0, 1.1])), [(1, 1000002)]),
        # times that differ below 0.1 ms are the same frame
        (dict(t1000001=(A, [0.99999, 1.09999])), [(1, 1000001)]),
        (dict(), []),
    ],
)
def test_warm_up_tracks_continue_the_previous_shards_tracks_they_overlap(warmup, expected):
    previous = _tracks(t1=(A, [0.9, 1.0, 1.1, 1.2]), t2=(B, [0.9, 1.0, 1.1, 1.2]))
    warmup = _tracks(**warmup) if warmup else previous.slice(0, 0)
    assert sorted(_match(previous, warmup)) == expected


def _staged_shards(lake, source, info, shards, clips_in=()):
    """Each shard staged as a worker stages it: a one-row detections file, clips only in ``clips_in``, then its ledger row."""
    from videolake.pipeline.analyze import ShardJob, ShardResult, commit_shard
    from videolake.pipeline.lake import write_table

    results = {}
    for shard in shards:
        job = ShardJob(source.video_id, source.content_key, info, shard, lake.url, "r", "h")
        base = {"video_id": source.video_id, "content_key": source.content_key, "shard_index": shard.index, "run_id": "r"}
        write_table(job.path("detections"), "detections", [{**base, "frame_index": shard.index, "t_s": shard.t_start_s,
                                                            "track_id": shard.index * 1_000_000 + 1, "class_id": 0}])
        clips = [{**base, "clip_index": 0, "t_start_s": shard.t_start_s, "t_end_s": shard.t_start_s + 2, "track_id": 1,
                  "action": "walking"}] if shard.index in clips_in else []
        write_table(job.path("clips"), "clips", clips)
        result = ShardResult(source.video_id, shard.index, "ok", frames_analyzed=1, n_detections=1, n_clips=len(clips),
                             clips_by_action={"walking": len(clips)} if clips else {})
        commit_shard(job, result)
        results[shard.index] = result
    return results


def test_a_shard_stages_only_tables_with_rows_and_finalize_takes_this_run_s_ledger_rows_from_its_results(tmp_path):
    from videolake.pipeline.decode import VideoInfo
    from videolake.pipeline.lake import Lake
    from videolake.pipeline.shards import Shard
    from videolake.pipeline.sources import VideoSource
    from videolake.pipeline.stitch import prepare_video

    lake = Lake.open_or_create(tmp_path / "lake")
    source = VideoSource(str(tmp_path / "cam.mp4"), "cam-1", 100, "ck")
    info = VideoInfo(source.uri, 4.0, 4.0, 64, 64, "mpeg4", 16)
    shards = [Shard(0, 0.0, 2.0, 0.0, 0, 0.0), Shard(1, 2.0, float("inf"), 2.0, 8, 0.0)]
    results = _staged_shards(lake, source, info, shards, clips_in={1})
    staged = sorted(p.relative_to(tmp_path / "lake" / "_staging").parts[0] for p in (tmp_path / "lake" / "_staging").rglob("*.parquet"))
    assert staged == ["clips", "detections", "detections", "ledger", "ledger"]  # no empty clips or overlaps files

    read = prepare_video(lake, "h", "r", source, info, shards, {}, 1.0)  # an earlier run's shards: ledger files read
    given = prepare_video(lake, "h", "r", source, info, shards, {}, 1.0, results=results)  # this run's: from results
    for (outcome, commit) in (read, given):
        assert outcome.status == "ok" and outcome.clips_by_action == {"walking": 1} and commit.track_map == {1: 1, 1_000_001: 2}
        assert commit.staged_rows == {"detections": [1, 1], "clips": [0, 1]}
    assert given[0] == read[0]
    lake.commit_video(given[1])
    assert lake.read("detections").num_rows == 2 and lake.read("clips").num_rows == 1
    assert not list((tmp_path / "lake" / "_staging").rglob("*.parquet"))


def test_a_staged_file_removed_under_a_commit_is_noticed_whether_or_not_its_shard_s_result_is_known(tmp_path):
    from videolake.pipeline.decode import VideoInfo
    from videolake.pipeline.errors import LakeError
    from videolake.pipeline.lake import Lake, table_path
    from videolake.pipeline.shards import Shard
    from videolake.pipeline.sources import VideoSource
    from videolake.pipeline.stitch import prepare_video

    lake = Lake.open_or_create(tmp_path / "lake")
    source = VideoSource(str(tmp_path / "cam.mp4"), "cam-1", 100, "ck")
    info = VideoInfo(source.uri, 4.0, 4.0, 64, 64, "mpeg4", 16)
    shards = [Shard(0, 0.0, 2.0, 0.0, 0, 0.0), Shard(1, 2.0, float("inf"), 2.0, 8, 0.0)]
    results = _staged_shards(lake, source, info, shards)
    kw = dict(config_hash="h", video_id=source.video_id, content_key=source.content_key, shard_key=shards[1].key())
    _, commit = prepare_video(lake, "h", "r", source, info, shards, {}, 1.0, results=results)
    os.remove(table_path(lake.url, "detections", **kw))  # another writer's clean-up, after the stitching
    with pytest.raises(LakeError, match="is missing"):
        lake.commit_video(commit)
    os.remove(table_path(lake.url, "ledger", **kw))  # before the stitching: the shard is not committed any more
    outcome, commit = prepare_video(lake, "h", "r", source, info, shards, {}, 1.0, results=results)
    assert outcome.frames_analyzed == 1 and commit.staged_rows["detections"] == [1, None]  # its file is expected: none
