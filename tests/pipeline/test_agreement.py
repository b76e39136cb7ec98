import pyarrow as pa
import pytest

from videolake.pipeline.agreement import agreement, match_boxes
from videolake.pipeline.lake import SCHEMAS


def _dets(rows: list[tuple]) -> pa.Table:
    """(frame_index, track_id, x1) rows of 40x100 boxes in one video."""
    return pa.Table.from_pylist([{"video_id": "v", "frame_index": f, "class_id": 0, "track_id": t, "x1": float(x), "y1": 0.0,
                                  "x2": x + 40.0, "y2": 100.0} for f, t, x in rows])


def _clips(rows: list[tuple]) -> pa.Table:
    return pa.Table.from_pylist([{"video_id": "v", "clip_index": c, "track_id": t, "action": a} for c, t, a in rows])


def test_match_boxes_is_one_to_one_and_needs_iou_half():
    a = [[0, 0, 10, 10], [20, 0, 30, 10]]
    b = [[21, 0, 31, 10], [1, 0, 11, 10], [100, 100, 110, 110]]
    assert sorted(match_boxes(a, b)) == [(0, 1), (1, 0)]
    assert match_boxes(a, [[6, 0, 16, 10]]) == []  # IoU 1/3
    assert match_boxes([], b) == []


def test_identical_runs_agree_fully_whatever_their_track_numbers():
    a = _dets([(0, 1, 0), (0, 2, 100), (1, 1, 2), (1, 2, 100)])
    b = _dets([(0, 7, 0), (0, 9, 100), (1, 7, 2), (1, 9, 100)])
    result = agreement(a, _clips([(0, 1, "walking"), (0, 2, "standing")]), b, _clips([(0, 7, "walking"), (0, 9, "standing")]))
    assert result.box_f1 == 1.0 and result.same_windows and result.actions_equal == 1.0 and result.clips_paired == 2


def test_missing_boxes_other_windows_and_other_actions_count_against_agreement():
    a = _dets([(0, 1, 0), (1, 1, 0), (2, 1, 0), (3, 1, 0), (3, None, 300)])  # untracked boxes are not compared
    b = _dets([(0, 1, 0), (1, 1, 0), (2, 1, 200)])  # frame 2 elsewhere, frame 3 missing
    result = agreement(a, _clips([(0, 1, "standing"), (1, 1, "sitting")]), b, _clips([(0, 1, "walking")]))
    assert result.boxes_a == 4 and result.boxes_b == 3 and result.boxes_matched == 2
    assert result.box_f1 == pytest.approx(4 / 7)
    assert not result.same_windows and result.clips_paired == 1 and result.actions_equal == 0.0
    assert "DIFFERENT" in result.line()


def test_tables_of_the_lake_schemas_are_accepted():
    det = SCHEMAS["detections"].empty_table()
    clips = SCHEMAS["clips"].empty_table()
    result = agreement(det, clips, det, clips)
    assert result.frames == 0 and result.box_f1 == 1.0 and result.same_windows
