"""Pose crop settings against the labelled clips: how many person clips each setting lets the action model answer.

    python bench/pose_crops.py [--workdir DIR] [--videos street,iscc_demo] [IMGSZ:MARGIN:CONF ...]

Reads the lake and labels that ``python bench/actions.py --workdir DIR`` wrote, re-runs the pose model
(ONNX Runtime on the CPU) on the lake's own boxes of the labelled clips of ``--videos`` with each
setting, and prints the clip evidence inference would decide (``clips.clip_evidence``): classified
(``enough`` or ``partial``), ``unknown``, or no row (``not_a_person``), for person and ``none`` labels.
The first setting should be the defaults (192:0.15:0.25), which give back the lake's own evidence.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/videolake-actions-bench"))
    parser.add_argument("--videos", default="street,iscc_demo", help="video names (file stems), comma-separated")
    parser.add_argument("settings", nargs="*", default=["192:0.15:0.25", "256:0.15:0.25", "320:0.15:0.25", "192:0.3:0.25", "192:0.15:0.1"])
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from videolake.pipeline.clips import clip_evidence
    from videolake.pipeline.config import RunConfig
    from videolake.pipeline.decode import iter_frames
    from videolake.pipeline.detect import Detections
    from videolake.pipeline.labels import labelled_windows, load_labelled_sequences
    from videolake.pipeline.models import resolve_pose
    from videolake.pipeline.pose import PoseEstimator
    from videolake.pipeline.render import lake_connection

    if not (args.workdir / "lake").exists():
        sys.exit(f"no lake in {args.workdir}: run python bench/actions.py --workdir {args.workdir} first")
    wanted = set(args.videos.split(","))
    con = lake_connection(args.workdir / "lake")
    try:
        _, data = load_labelled_sequences(con, args.workdir / "labels.csv")
        uris = dict(con.execute("SELECT video_id, uri FROM videos").fetchall())
        clips = []  # (video name, person or none, the track's detections in the window)
        for (video_id, _, _), y, window in zip(data.keys, data.y, labelled_windows(con, data)):
            label, name = data.classes[y], Path(uris[video_id]).stem
            if name in wanted and label != "riding":
                clips.append((video_id, name, "none" if label == "none" else "person", window))
    finally:
        con.close()
    times = collections.defaultdict(set)
    for video_id, _, _, window in clips:
        times[video_id].update(window.t_s.tolist())
    frames = {}
    for video_id, wanted_t in times.items():
        t = np.array(sorted(wanted_t))
        for frame in iter_frames(uris[video_id].removeprefix("file://"), RunConfig().analysis_fps):
            j = int(np.abs(t - frame.t_s).argmin())
            if abs(t[j] - frame.t_s) < 0.03:
                frames[(video_id, float(t[j]))] = frame.image
    print(f"{len(clips)} labelled clips of {', '.join(sorted(wanted))}, {len(frames)} frames")
    for setting in args.settings:
        imgsz, margin, conf = setting.split(":")
        started = time.perf_counter()
        pose = PoseEstimator(resolve_pose("default").path, imgsz=int(imgsz), margin=float(margin), conf=float(conf), runtime="onnx")
        counts: collections.Counter = collections.Counter()
        for video_id, name, kind, window in clips:
            images = [frames[(video_id, float(t))] for t in window.t_s]
            boxes = [Detections(box[None], np.ones(1), np.zeros(1), tracker_id=np.ones(1, np.int64)) for box in window.xyxy.reshape(-1, 4)]
            posed = pose(images, boxes, {0})
            keypoints = np.stack([d.keypoints[0] for d in posed])
            confidence = np.array([d.pose_confidence[0] for d in posed])
            evidence = clip_evidence(dataclasses.replace(window, keypoints=keypoints, pose_confidence=confidence),
                                     data.config.min_track_frames)
            outcome = "classified" if evidence.classified else "no row" if evidence.value == "not_a_person" else "unknown"
            counts[(name, kind, outcome)] += 1
        print(f"imgsz {imgsz} margin {margin} conf {conf} ({time.perf_counter() - started:.0f} s):")
        for name in sorted(wanted):
            for kind in ("person", "none"):
                row = {o: counts[(name, kind, o)] for o in ("classified", "unknown", "no row")}
                if sum(row.values()):
                    print(f"  {name:10s} {kind:6s} " + ", ".join(f"{o} {n}" for o, n in row.items()))


if __name__ == "__main__":
    main()
