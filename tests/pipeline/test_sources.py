import pytest

from pipeline.errors import SourceError
from pipeline.sources import discover, video_id_for


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


def test_video_id_is_stable_and_changes_with_content(tmp_path):
    path = tmp_path / "cam 1.mp4"
    path.write_bytes(b"a" * 300_000)
    first = video_id_for(str(path))
    assert first == video_id_for(str(path))
    assert first.startswith("cam_1-") and len(first) == len("cam_1-") + 12
    data = bytearray(path.read_bytes())
    data[-5] = ord("b")
    path.write_bytes(bytes(data))
    assert video_id_for(str(path)) != first
