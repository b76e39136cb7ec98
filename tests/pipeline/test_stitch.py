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
