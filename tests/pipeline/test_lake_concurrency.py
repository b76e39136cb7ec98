"""Concurrent writers on one lake, on disk and in a bucket: Delta's optimistic concurrency, retried.

Two writer processes publish the same videos at once while a third compacts and the test
reads: every read sees each video whole or not at all, and the lake ends with each video's
rows exactly once.
"""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from videolake.pipeline.lake import Lake

VIDEOS = 6
ROWS = 40  # detections per video, over 2 shards


def _rows(video: int) -> list[dict]:
    return [{"shard_index": i // (ROWS // 2), "frame_index": i, "t_s": i / 10, "track_id": 1 + i // (ROWS // 2) * 1_000_000,
             "class_id": 0, "class_name": "Normal", "confidence": 0.9, "x1": float(video), "y1": 0, "x2": 1, "y2": 1}
            for i in range(ROWS)]


def _write(url: str, env: dict, worker: int, out) -> None:  # noqa: ANN001 - a multiprocessing queue
    os.environ.update(env)
    from tests.synthetic_lake import publish_video

    said: list[str] = []
    lake = Lake.open_or_create(url, notify=said.append)
    for video in range(VIDEOS):
        publish_video(lake, f"v{video}", detections=_rows(video), track_map={1: 1, 1_000_001: 1}, run_id=f"run{worker}")
    out.put((worker, said))


def _compact(url: str, env: dict, stop, out) -> None:  # noqa: ANN001
    os.environ.update(env)
    from videolake.pipeline.compact import compact

    lake = None
    while lake is None and not stop.is_set():
        try:
            lake = Lake.open(url, notify=lambda m: None)
        except Exception:  # noqa: BLE001 - not created yet
            time.sleep(0.05)
    runs = 0
    while not stop.is_set():
        compact(lake)
        runs += 1
    out.put(("compactions", runs))


@pytest.fixture(params=["local", "s3"])
def lake_url(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "lake"), {}
    s3 = request.getfixturevalue("s3")
    s3.mkdir(f"{s3.prefix}-lake")
    return f"s3://{s3.prefix}-lake/lake", {k: v for k, v in os.environ.items() if k.startswith("AWS_")}


@pytest.mark.slow
def test_two_writers_and_a_compaction_at_once_end_with_each_video_once_and_readers_never_fail(lake_url):
    url, env = lake_url
    ctx = multiprocessing.get_context("spawn")  # delta-rs's runtime does not survive a fork
    out, stop = ctx.Queue(), ctx.Event()
    writers = [ctx.Process(target=_write, args=(url, env, w, out)) for w in range(2)]
    compactor = ctx.Process(target=_compact, args=(url, env, stop, out))
    for p in [*writers, compactor]:
        p.start()
    reads, seen = 0, set()
    try:
        while any(p.is_alive() for p in writers):
            try:
                lake = Lake.open(url)
            except Exception:  # noqa: BLE001 - the writers have not created it yet
                time.sleep(0.05)
                continue
            counts = lake.sql("SELECT video_id, count(*) AS n FROM detections GROUP BY 1").to_pylist()
            assert all(r["n"] == ROWS for r in counts), counts  # a video is seen whole, or not at all
            seen.update(r["video_id"] for r in counts)
            reads += 1
    finally:
        for p in writers:
            p.join(300)
        stop.set()
        compactor.join(300)
    results = dict(out.get(timeout=10) for _ in range(3))
    assert all(p.exitcode == 0 for p in [*writers, compactor]), [p.exitcode for p in [*writers, compactor]]
    lake = Lake.open(url)
    rows = lake.sql("SELECT video_id, count(*) AS n, count(DISTINCT frame_index) AS d, min(track_id) AS t, "
                    "max(track_id) AS u FROM all_detections GROUP BY 1 ORDER BY 1").to_pylist()
    assert rows == [{"video_id": f"v{v}", "n": ROWS, "d": ROWS, "t": 1, "u": 1} for v in range(VIDEOS)]
    assert lake.sql("SELECT count(*) AS n FROM all_videos").to_pylist() == [{"n": VIDEOS}]
    assert not lake.sql("SELECT * FROM all_videos WHERE status <> 'ok'").num_rows
    said = [line for worker in (0, 1) for line in results[worker]]
    assert all(line.startswith(("waiting: another writer committed", "video ")) for line in said), said
    print(f"\n{'bucket' if url.startswith('s3://') else 'disk'}: {reads} reads during the commits saw {len(seen)} videos appear whole; "
          f"{results['compactions']} compactions; the writers waited {sum(line.startswith('waiting') for line in said)} time(s)")


def test_a_writer_behind_another_commit_retries_and_says_so_in_one_line(tmp_path):
    from deltalake import DeltaTable

    from tests.synthetic_lake import publish_video

    said: list[str] = []
    lake = Lake.open_or_create(tmp_path, notify=said.append)
    publish_video(lake, "v", detections=_rows(0))
    stale = DeltaTable(lake.table_uri("detections"))  # this writer read the table here...
    publish_video(Lake.open(tmp_path), "v", detections=_rows(1))  # ...and another run published the video again
    first = True
    real_table = Lake.table

    def behind(self, name):  # noqa: ANN001
        nonlocal first
        if name == "detections" and first:
            first = False
            return stale
        return real_table(self, name)

    lake.table = behind.__get__(lake)
    publish_video(lake, "v", detections=_rows(2))
    assert [line for line in said if line.startswith("waiting")] == [
        f"waiting: another writer committed to {lake.table_uri('detections')} first; retrying video v"]
    assert lake.sql("SELECT count(*) AS n, min(x1) AS x FROM all_detections").to_pylist() == [{"n": ROWS, "x": 2.0}]
