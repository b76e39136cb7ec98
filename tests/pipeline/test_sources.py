import pytest

from videolake.pipeline.errors import SourceError
from videolake.pipeline.sources import Identities, camera_id_for, check_reachable, discover, recorded_at_for, video_id_for


def test_discover_walks_folders_by_extension_and_takes_named_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/one.mp4", "a/b/two.MKV", "a/b/three.ts", "a/notes.txt", "a/b/four.webm"]:
        (tmp_path / name).write_bytes(name.encode() * 10)  # distinct contents: one content counts once
    named = tmp_path / "clip.bin"
    named.write_bytes(b"y")
    found = discover([tmp_path / "a", named, tmp_path / "a" / "one.mp4"])
    names = sorted(p.uri.rsplit("/", 1)[-1] for p in found)
    assert names == ["clip.bin", "four.webm", "one.mp4", "three.ts", "two.MKV"]


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="source not found"):
        discover([tmp_path / "nope"])


def test_identity_comes_from_content_so_a_moved_or_copied_file_is_the_same_video(tmp_path):
    import os
    import shutil

    (tmp_path / "cam 1").mkdir()
    path = tmp_path / "cam 1" / "clip 1.mp4"
    path.write_bytes(os.urandom(3 << 20))
    (first,) = discover([path])
    assert first.video_id == video_id_for(first.uri, first.content_key) and first.video_id.startswith("clip_1-")
    assert len(first.content_key) == 32 and first.camera_id == "cam 1"
    shutil.copy(path, tmp_path / "copy.mp4")
    copies = discover([tmp_path])
    assert len(copies) == 1 and copies[0].content_key == first.content_key  # one content, counted once
    (moved,) = discover([tmp_path / "copy.mp4"])
    assert moved.content_key == first.content_key and moved.video_id.startswith("copy-")
    known = Identities(by_version={(first.uri, first.size_bytes, first.version): first.content_key},
                       by_content={first.content_key: (first.video_id, first.uri)})
    assert discover([tmp_path / "copy.mp4"], known=known)[0].video_id == first.video_id  # the lake's id follows the content
    assert discover([tmp_path], known=known)[0].uri == first.uri  # of two copies, the path the lake recorded
    with open(path, "r+b") as f:  # a change in the middle only: size, head and tail unchanged
        f.seek(3 << 19)  # 1.5 MiB: between the head and the tail
        f.write(b"x")
    os.utime(path, ns=(1, 1))
    assert discover([path])[0].content_key == first.content_key  # the fingerprint reads only the head and tail
    path.write_bytes(os.urandom(3 << 20))
    assert discover([path])[0].content_key != first.content_key
    assert discover([path], known=known)[0].content_key != first.content_key  # a new version is read, not trusted


def test_the_lakes_key_is_used_without_reading_the_file_again(tmp_path, monkeypatch):
    from videolake.pipeline import sources

    path = tmp_path / "a.mp4"
    path.write_bytes(b"v" * 1000)
    (first,) = discover([path])
    known = Identities(by_version={(first.uri, first.size_bytes, first.version): first.content_key},
                       by_content={first.content_key: (first.video_id, first.uri)})
    monkeypatch.setattr(sources, "fingerprint", lambda uri, size: pytest.fail(f"{uri} was read"))
    assert discover([path], known=known) == [first]


def test_a_remembered_listing_spares_the_next_one_reading_and_then_is_forgotten(tmp_path, monkeypatch):
    from videolake.pipeline import sources

    for i in range(600):  # more than the threads take at a time
        (tmp_path / f"cam{i % 3}").mkdir(exist_ok=True)
        (tmp_path / f"cam{i % 3}" / f"{i:04d}.mp4").write_bytes(f"video {i}".encode() * 100)
    read = []
    real = sources.fingerprint
    monkeypatch.setattr(sources, "fingerprint", lambda uri, size: read.append(uri) or real(uri, size))
    first = discover([tmp_path], remember=True)  # as `videolake run` lists before its flow starts
    assert len(first) == len(read) == 600 and len({s.content_key for s in first}) == 600
    assert [s.uri for s in first] == sorted(s.uri for s in first)
    assert {s.camera_id for s in first} == {"cam0", "cam1", "cam2"}
    assert discover([tmp_path]) == first and len(read) == 600  # the flow's listing: nothing read again
    assert not sources._FINGERPRINTS  # and nothing kept for a run that no longer needs it (serve runs for months)
    assert discover([tmp_path]) == first and len(read) == 1200  # a listing without one before it reads the files
    assert not sources._FINGERPRINTS


@pytest.mark.parametrize("uri, pattern, camera", [
    ("/data/cam3/2026/a.mp4", None, "2026"),
    ("/data/cam3/a.mp4", None, "cam3"),
    ("s3://bucket/a.mp4", None, "bucket"),
    ("/data/site-7/cam12/2026/a.mp4", r"cam(?P<camera>\d+)", "12"),
    ("/data/site-7/cam12/a.mp4", r"site-(\d+)", "7"),
    ("/data/x/a.mp4", r"cam\d+", None),
])
def test_camera_id_from_the_parent_folder_or_a_pattern(uri, pattern, camera):
    assert camera_id_for(uri, pattern) == camera


def test_recorded_at_from_the_container_then_the_file_name_then_a_sidecar(tmp_path):
    from datetime import datetime, timezone

    named = tmp_path / "cam3_20260501_143210.mp4"
    assert recorded_at_for(str(named), "2026-04-30T08:00:00.000000Z") == (datetime(2026, 4, 30, 8, tzinfo=timezone.utc), "container")
    assert recorded_at_for(str(named), None) == (datetime(2026, 5, 1, 14, 32, 10, tzinfo=timezone.utc), "filename")
    assert recorded_at_for(str(named), "1970-01-01T00:00:00Z")[1] == "filename"  # a muxer's placeholder is no time
    assert recorded_at_for(str(named), None, "%Y-%m-%d") == (None, None)
    other = tmp_path / "front door.mp4"
    (tmp_path / "front door.json").write_text('{"recorded_at": "2026-05-01T16:00:00+02:00"}')
    assert recorded_at_for(str(other), None) == (datetime(2026, 5, 1, 14, tzinfo=timezone.utc), "sidecar")
    assert recorded_at_for(str(tmp_path / "none.mp4"), None) == (None, None)



def test_paths_that_exist_are_literal_even_with_glob_characters(tmp_path):
    folder = tmp_path / "cams[1]"
    folder.mkdir()
    (folder / "cam[2].mp4").write_bytes(b"x" * 10)
    (folder / "notes.txt").write_bytes(b"n")
    (tmp_path / "cams1").mkdir()  # what `cams[1]` matches as a glob: must not be read instead
    (tmp_path / "cams1" / "decoy.mp4").write_bytes(b"d")
    expected = [str(folder / "cam[2].mp4")]
    assert [v.uri for v in discover([folder])] == expected                   # the folder
    assert [v.uri for v in discover([folder / "cam[2].mp4"])] == expected    # the file
    assert [v.uri for v in discover([f"{folder}/*.mp4"])] == expected        # a glob inside the literal folder
    assert [v.uri for v in discover([tmp_path / "cams[1]" / "cam*"])] == expected
    check_reachable([folder / "cam[2].mp4", f"{folder}/*.mp4"])


def test_a_path_that_does_not_exist_is_a_glob_when_it_has_glob_characters(tmp_path):
    for name in ("cam1.mp4", "cam2.mp4", "cam3.mkv"):
        (tmp_path / name).write_bytes(name.encode())  # three contents: copies of one would count once
    assert [v.uri.rsplit("/", 1)[-1] for v in discover([tmp_path / "cam[12].mp4"])] == ["cam1.mp4", "cam2.mp4"]
    assert [v.uri.rsplit("/", 1)[-1] for v in discover([tmp_path / "**" / "cam?.*"])] == ["cam1.mp4", "cam2.mp4", "cam3.mkv"]
    assert discover([tmp_path / "nothing-*.mp4"]) == []  # a glob may match nothing (a schedule finds nothing yet)
