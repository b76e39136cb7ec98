import pytest

from videolake.pipeline.errors import SourceError
from videolake.pipeline.sources import check_reachable, discover, video_id_for


def test_discover_walks_folders_by_extension_and_takes_named_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/one.mp4", "a/b/two.MKV", "a/b/three.ts", "a/notes.txt", "a/b/four.webm"]:
        (tmp_path / name).write_bytes(b"x" * 10)
    named = tmp_path / "clip.bin"
    named.write_bytes(b"y")
    found = discover([tmp_path / "a", named, tmp_path / "a" / "one.mp4"])
    names = sorted(p.uri.rsplit("/", 1)[-1] for p in found)
    assert names == ["clip.bin", "four.webm", "one.mp4", "three.ts", "two.MKV"]


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="source not found"):
        discover([tmp_path / "nope"])


def test_video_id_names_the_source_and_content_key_its_version(tmp_path):
    import os

    path = tmp_path / "cam 1.mp4"
    path.write_bytes(b"a" * 300_000)
    (first,) = discover([path])
    assert first.video_id == video_id_for(str(path.resolve())) and first.video_id.startswith("cam_1-")
    assert len(first.video_id) == len("cam_1-") + 12
    (again,) = discover([path])
    assert again == first
    path.write_bytes(b"b" * 300_001)
    os.utime(path, ns=(1, 1))
    (changed,) = discover([path])
    assert changed.video_id == first.video_id and changed.content_key != first.content_key


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
        (tmp_path / name).write_bytes(b"x")
    assert [v.uri.rsplit("/", 1)[-1] for v in discover([tmp_path / "cam[12].mp4"])] == ["cam1.mp4", "cam2.mp4"]
    assert [v.uri.rsplit("/", 1)[-1] for v in discover([tmp_path / "**" / "cam?.*"])] == ["cam1.mp4", "cam2.mp4", "cam3.mkv"]
    assert discover([tmp_path / "nothing-*.mp4"]) == []  # a glob may match nothing (a schedule finds nothing yet)
