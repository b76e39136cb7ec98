from datetime import datetime, timedelta, timezone
from functools import partial

from videolake.pipeline.lake import Lake
from videolake.pipeline.ledger import known_sources, read_lake_state
from videolake.pipeline.sources import discover

CONFIG = "cfg1"


def _videos(tmp_path, count):
    """``count`` distinct small files under ``tmp_path/cams``, listed."""
    for i in range(count):
        folder = tmp_path / "cams" / f"cam{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:04d}.mp4").write_bytes(f"video {i}".encode() * 50)
    return discover([tmp_path / "cams"])


def _seed(lake, sources, status="ok", at=None):
    at = at or datetime.now(timezone.utc)
    rows = [{"video_id": s.video_id, "content_key": s.content_key, "uri": s.uri, "status": status, "finished_at": at,
             "size_bytes": s.size_bytes, "source_version": s.version, "config_hash": CONFIG,
             "error": None if status == "ok" else "cannot decode", "error_kind": None if status == "ok" else "decode"}
            for s in sources]
    lake.write("videos", lambda: lake.rows("videos", rows), None, f"{len(rows)} seeded videos")


def test_a_run_reads_only_what_the_lake_knows_of_its_paths_and_contents(tmp_path):
    sources = _videos(tmp_path, 40)
    lake = Lake.open_or_create(tmp_path / "lake")
    _seed(lake, sources[:30])
    _seed(lake, sources[30:35], status="failed")

    everything = known_sources(lake)
    assert len(everything.by_content) == 35
    today = sources[28:38]
    some = known_sources(lake, uris=[s.uri for s in today])
    assert set(some.by_content) == {s.content_key for s in today[:7]}  # 28..34 are in the lake, 35..37 are new
    assert known_sources(lake, uris=[], content_keys=[]).by_content == {}
    state = read_lake_state(lake, CONFIG, today)
    assert state.finished_ok == {(s.video_id, s.content_key) for s in today[:2]}
    assert set(state.quarantined) == {(s.video_id, s.content_key) for s in today[2:7]}
    assert len(read_lake_state(lake, CONFIG).finished_ok) == 30  # no sources: the whole table


def test_a_copy_in_todays_folder_keeps_the_lakes_id_and_its_latest_path(tmp_path):
    sources = _videos(tmp_path, 6)
    lake = Lake.open_or_create(tmp_path / "lake")
    then = datetime.now(timezone.utc) - timedelta(days=1)
    _seed(lake, sources, at=then)
    first = sources[0]
    moved = tmp_path / "archive" / "moved.mp4"  # the lake saw it at its first path, later at this one
    moved.parent.mkdir()
    moved.write_bytes((tmp_path / "cams" / "cam0" / "0000.mp4").read_bytes())
    (later,) = discover([moved])
    _seed(lake, [type(later)(later.uri, first.video_id, later.size_bytes, later.content_key, later.version)])

    today = tmp_path / "today"
    today.mkdir()
    (today / "copy.mp4").write_bytes(moved.read_bytes())  # a third copy, in a folder the lake never saw
    lookup = partial(known_sources, lake)
    (copy,) = discover([today], known=lookup)
    assert copy.video_id == first.video_id  # found by its content, not by any path listed today
    assert discover([today, tmp_path / "archive", tmp_path / "cams" / "cam0"], known=lookup)[0].uri == later.uri  # the latest path
