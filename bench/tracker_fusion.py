"""How ByteTrack's ``fuse_score`` fragments tracks of the default detector: vtest.avi upright and turned on its side.

    python bench/tracker_fusion.py

With ``fuse_score`` (Ultralytics' default), a detection matches a track only when IoU x confidence
exceeds 1 - ``match_thresh`` (0.2): the default detector is 0.3-0.6 confident of most people. Prints,
for 12-20 s of vtest.avi at 8 fps, how many detections no track claims (they get no action), the
number of tracks and their median length, with fusion on and off. A lead, not a decision: fewer tracks
may also mean people merged, which this does not measure.
"""
import sys
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.media import footage_path, frames_at
from videolake.pipeline.detect import Detector
from videolake.pipeline.track import Tracker
from videolake.pipeline.models import default_detector_path

det = Detector(str(default_detector_path()), imgsz=640, conf=0.25, device="cpu")
upright = frames_at(footage_path("vtest.avi"), 12.0, 20.0, fps=8)
for name, frames in (("turned", [np.ascontiguousarray(np.rot90(f, -1)) for f in upright]), ("upright", upright)):
    dets = det(frames)
    for fuse in (True, False):
        tr = Tracker(fps=8)
        tr._tracker.args.fuse_score = fuse  # read at each update by Ultralytics' BYTETracker
        lengths = {}
        untracked = total = 0
        for f, d in zip(frames, dets):
            t = tr.update(d, f)
            total += len(t)
            untracked += int((t.tracker_id < 0).sum())
            for i in t.tracker_id[t.tracker_id >= 0]:
                lengths[int(i)] = lengths.get(int(i), 0) + 1
        L = np.array(list(lengths.values()))
        print(f"{name} fuse_score={fuse}: detections {total}, untracked {untracked}, tracks {len(L)}, "
              f"median length {np.median(L):.0f}, tracks >= 16 frames {int((L >= 16).sum())}", flush=True)
