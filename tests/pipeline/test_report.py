"""The static HTML report, opened in a real headless Chromium."""

import json
import re
import shutil
import subprocess
from datetime import datetime, timezone

import numpy as np
import pytest
from PIL import Image

from videolake.pipeline.lake import Lake
from tests.synthetic_lake import publish_video
from videolake.pipeline.plots import action_colors
from videolake.pipeline.query import connect
from videolake.pipeline.report import choose_bucket_s, write_report
from tests.real_lake import real_lake

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=10000"]
# Injected into a copy of the page: after load, record each image's status where --dump-dom shows it.
_PROBE = """<script>window.addEventListener('load', function () {
  var images = Array.from(document.images).map(function (i) {
    return {src: i.getAttribute('src'), loaded: i.complete && i.naturalWidth > 0, width: i.naturalWidth};
  });
  var out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify({title: document.title, images: images});
  document.body.appendChild(out);
});</script>"""


def chromium_page_status(page, tmp_path):
    """Open ``page`` in headless Chromium; return the title and each image's load status."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium is not installed (make chromium)")
    probe = page.with_name("_probe_" + page.name)
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    try:
        done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom",
                               probe.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, (done.returncode, done.stderr[-2000:])
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.fixture(scope="module")
def report(samples_dir, tmp_path_factory):
    """The sample lake plus a failed video and a second run; its report."""
    root = tmp_path_factory.mktemp("report")
    lake = root / "lake"
    shutil.copytree(real_lake(samples_dir).path, lake)
    now = datetime.now(timezone.utc)
    publish_video(lake, "broken-0123456789ab", config_hash="ffffffffffffffff", run_id="second-run", video={
        "finished_at": now, "uri": "/videos/broken.mp4", "status": "failed",
        "error": "/videos/broken.mp4: not a readable video container: Invalid data"})
    Lake.open(lake).commit_run({
        "run_id": "second-run", "started_at": now, "finished_at": now, "config": "{}", "config_hash": "ffffffffffffffff",
        "videos_ok": 0, "videos_failed": 1, "frames_analyzed": 0, "wall_s": 0.5})
    con = connect(lake)
    try:
        result = write_report(con, root / "report", keyframes_per_video=2)
    finally:
        con.close()
    return lake, result


def test_report_has_runs_failures_and_a_section_per_video(report, samples_dir):
    lake, result = report
    page = result.index.read_text()
    assert result.videos == 2 and not result.notes
    assert "<h2>Runs (2)</h2>" in page and "real-lake-run" in page and "second-run" in page
    assert "<h2>Failures (1)</h2>" in page and "not a readable video container: Invalid data" in page
    for video_id in real_lake(samples_dir).video_ids.values():
        assert f'<h2 id="{video_id}-' in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(result.images) == 2 * (2 + 2)  # timeline, buckets, 2 keyframes per video
    assert all(s.startswith("img/") and (result.index.parent / s).is_file() for s in sources)
    assert not re.search(r"(https?:)?//", page.replace("<!DOCTYPE html>", ""))  # nothing from the network
    assert "<script" not in page


def test_report_opens_in_headless_chromium_with_every_image_loaded(report, tmp_path):
    _, result = report
    status = chromium_page_status(result.index, tmp_path)
    assert status["title"] == "videolake report"
    assert len(status["images"]) == 8
    assert all(i["loaded"] and i["width"] > 100 for i in status["images"]), status["images"]


def test_the_chromium_check_catches_a_broken_image(report, tmp_path):
    _, result = report
    broken = result.index.with_name("broken.html")
    broken.write_text(result.index.read_text().replace("-timeline.png", "-missing.png", 1))
    try:
        status = chromium_page_status(broken, tmp_path)
    finally:
        broken.unlink()
    assert [i["loaded"] for i in status["images"]].count(False) == 1


def test_the_timeline_shows_each_tracks_clips_in_the_colour_of_their_action(report, samples_dir):
    lake, result = report
    con = connect(lake)
    actions = [r[0] for r in con.execute("SELECT DISTINCT action FROM clips").fetchall()]
    shown = con.execute("SELECT DISTINCT action FROM clips WHERE video_id = ?",
                        [real_lake(samples_dir).video_ids["carphone_pristine.mp4"]]).fetchall()
    con.close()
    colours = action_colors(actions)
    timeline = next(p for p in result.images if p.name.startswith("carphone") and p.name.endswith("-timeline.png"))
    pixels = np.asarray(Image.open(timeline).convert("RGB")).reshape(-1, 3).astype(int)
    for (action,) in shown:
        rgb = np.array([int(colours[action][i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(axis=1) < 10).sum() > 2000, action  # a bar, not just the legend patch


@pytest.mark.parametrize("duration_s, clip_s, bucket_s", [(4, 2, 2), (10, 2, 2), (300, 2, 10), (3600, 2, 120), (10, 5, 5)])
def test_bucket_size_follows_the_video_length(duration_s, clip_s, bucket_s):
    assert choose_bucket_s(duration_s, clip_s) == bucket_s


def test_a_video_whose_source_is_gone_gets_a_note_and_the_rest_of_the_report_stands(samples_dir, tmp_path):
    lake = tmp_path / "lake"
    shutil.copytree(real_lake(samples_dir).path, lake)
    gone = tmp_path / "moved-away.mp4"
    publish_video(lake, "gone-0123456789ab", config_hash="eeeeeeeeeeeeeeee", run_id="r", detections=[{
        "video_id": "gone-0123456789ab", "content_key": "c", "shard_index": 0, "frame_index": 0, "t_s": 0.0, "track_id": 1,
        "class_id": 0, "class_name": "Normal", "confidence": 0.9, "x1": 10.0, "y1": 10.0, "x2": 50.0, "y2": 120.0, "run_id": "r"}],
        video={"uri": str(gone), "status": "ok", "finished_at": datetime.now(timezone.utc), "width": 320, "height": 240,
               "fps": 25.0, "duration_s": 4.0})
    con = connect(lake)
    try:
        result = write_report(con, tmp_path / "report", keyframes_per_video=2)
    finally:
        con.close()
    notes = [n for n in result.notes if n.startswith("gone-0123456789ab: keyframes skipped, the source cannot be read")]
    assert len(notes) == 1 and str(gone) in notes[0], result.notes
    assert result.images and all(p.is_file() for p in result.images)  # the other videos' keyframes are there
    assert "keyframes skipped" in result.index.read_text()
