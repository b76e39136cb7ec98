"""Annotated clips rendered on demand from the source video and the lake's rows."""

import av
import numpy as np
import pytest
import supervision as sv

from videolake.pipeline.decode import iter_frames, probe
from videolake.pipeline.errors import ConfigError, SourceError
from tests.synthetic_lake import publish_video
from videolake.pipeline.query import connect
from videolake.pipeline.render import Overlay, find_video, label_for, load_overlay, render_clip
from tests.real_lake import real_lake


@pytest.fixture(scope="module")
def lake(samples_dir):
    return real_lake(samples_dir)


@pytest.fixture
def con(lake):
    c = connect(lake.path)
    yield c
    c.close()


def test_render_writes_the_range_with_boxes_in_each_tracks_colour(lake, con, tmp_path):
    video_id = lake.video_ids["bikes.mp4"]
    out = tmp_path / "bikes.mp4"
    result = render_clip(con, video_id, out, 3.0, 6.0)
    assert (result.frames_written, result.width, result.height, result.fps) == (75, 640, 272, 25.0)
    assert result.t_start_s == pytest.approx(3.0) and result.t_end_s == pytest.approx(5.96)
    assert result.boxes_drawn > 0 and result.config_hash == lake.config_hash
    info = probe(out)
    assert (info.codec, info.width, info.height, info.n_frames_estimate) == ("h264", 640, 272, 75)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)

    # Where the lake has a tracked detection, the rendered frame shows its box edge in the track's colour.
    video = find_video(con, video_id)
    overlay = load_overlay(con, video, 3.0, 6.0)
    tracked = np.flatnonzero((overlay.track_id >= 0) & (overlay.t_s >= 3.0))
    assert len(tracked), "the sample lake should have tracked people in bikes.mp4 between 3 and 6 s"
    i = tracked[0]
    t_s, (x1, y1, _, y2), track_id = overlay.t_s[i], overlay.xyxy[i].round().astype(int), int(overlay.track_id[i])
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    frame = frames[int(round((t_s - 3.0) * 25))]
    colour = np.array(sv.ColorPalette.DEFAULT.by_idx(track_id).as_bgr(), dtype=float)
    y_mid = slice(max(y1, 0) + 30, min(y2, 272) - 10)  # below the label, along the left edge
    columns = range(max(x1 - 2, 0), min(x1 + 3, 640))

    def distance(image):  # how far the pixels along the box's left edge are from the track's colour (best column)
        return min(np.median(np.abs(image[y_mid, x].astype(float) - colour).sum(axis=1)) for x in columns)

    assert distance(frame) < 80
    assert distance(next(iter_frames(video.uri, start_s=t_s, end_s=t_s + 0.02)).image) > 150  # the source has no such line


def test_labels_carry_track_class_action_and_confidence(lake, con):
    clip = con.execute("SELECT track_id, t_start_s, action, action_confidence, video_id FROM clips "
                       "WHERE action <> 'unknown' ORDER BY video_id, t_start_s LIMIT 1").fetchall()[0]
    video = find_video(con, clip[4])
    overlay = load_overlay(con, video, clip[1], clip[1] + 2.0)
    i = next(j for j in range(len(overlay)) if overlay.track_id[j] == clip[0] and overlay.t_s[j] >= clip[1])
    text = label_for(overlay, i, overlay.t_s[i])
    assert text.startswith(f"#{clip[0]} {overlay.class_name[i]} {overlay.confidence[i]:.2f}")
    assert text.endswith(f"| {clip[2]} {clip[3]:.2f}")


def test_abstentions_and_skeletons_show_on_the_frames(lake, con):
    video = find_video(con, lake.video_ids["carphone_pristine.mp4"])
    overlay = load_overlay(con, video, 0.0, 4.0)
    assert overlay.keypoints is not None and (overlay.keypoints[:, :, 2] >= 0.5).any()  # the seated man's head and shoulders
    texts = {label_for(overlay, i, overlay.t_s[i]) for i in range(len(overlay)) if overlay.track_id[i] >= 0}
    assert any(t.endswith("| unknown") for t in texts)      # a person, too little to say what he does
    # A tracked box with no clip where clips exist: the run did not take it for a person.
    other = Overlay(t_s=np.array([0.5, 0.5]), xyxy=np.array([[0, 0, 10, 20], [20, 0, 30, 20]], np.float32),
                    confidence=np.array([0.9, 0.8], np.float32), track_id=np.array([1, 2]), class_name=np.array(["Normal", "Fall"]),
                    clips=[(1, 0.0, 2.0, "walking", 0.8)], hold_s=0.5)
    assert label_for(other, 0, 0.5).endswith("| walking 0.80") and label_for(other, 1, 0.5).endswith("| no action")
    from videolake.pipeline.render import draw_skeletons

    frame = np.zeros((144, 176, 3), np.uint8)
    drawn = draw_skeletons(frame.copy(), overlay.keypoints[overlay.t_s == overlay.t_s[0]])
    assert (drawn != frame).any()


def test_render_errors_say_what_is_wrong(lake, con, tmp_path):
    with pytest.raises(ConfigError, match="not in the lake; videos there: .*bikes"):
        render_clip(con, "nope", tmp_path / "x.mp4")
    with pytest.raises(ConfigError, match="must be after start"):
        render_clip(con, lake.video_ids["bikes.mp4"], tmp_path / "x.mp4", 5.0, 4.0)
    with pytest.raises(ConfigError, match="past the end"):
        render_clip(con, lake.video_ids["bikes.mp4"], tmp_path / "x.mp4", 60.0)
    with pytest.raises(ConfigError, match="no results under config_hash"):
        render_clip(con, lake.video_ids["bikes.mp4"], tmp_path / "x.mp4", config_hash="0" * 16)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_moved_source_is_a_source_error(tmp_path):
    publish_video(tmp_path, "gone-1", video={"uri": str(tmp_path / "gone.mp4"), "width": 64, "height": 64, "fps": 25.0,
                                             "duration_s": 2.0})
    con = connect(tmp_path)
    try:
        with pytest.raises(SourceError, match="file not found"):
            render_clip(con, "gone-1", tmp_path / "out" / "x.mp4")
    finally:
        con.close()
    assert not list((tmp_path / "out").iterdir())
