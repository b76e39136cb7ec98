"""Training and evaluating the action LSTM (CPU is enough: the model is small)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from videolake.pipeline.actions import ActionEnsemble, ActionLSTM, ActionModel, pad_sequences

__all__ = ["TrainConfig", "Evaluation", "train_action_model", "evaluate", "train_synthetic",
           "split_by_group", "sequences_sha256", "majority_baseline", "train_on_labels", "evaluate_on_labels"]


@dataclass(frozen=True)
class TrainConfig:
    hidden_size: int = 64
    num_layers: int = 1
    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 3e-3
    patience_epochs: int = 5
    seed: int = 0
    members: int = 1  # more: that many LSTMs from seeds seed, seed + 1, ..., answering with their mean (``ActionEnsemble``)
    # Training only, against leaning on one noisy keypoint: each feature of a training clip is, with this
    # probability, replaced by its mean for the whole clip, and every value gets Gaussian noise of
    # ``feature_noise`` times its feature's spread.
    feature_dropout: float = 0.0
    feature_noise: float = 0.0


@dataclass
class Evaluation:
    classes: tuple[str, ...]
    accuracy: float
    confusion: np.ndarray  # rows: true class, columns: predicted class
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)

    def table(self) -> str:
        width = max(len(c) for c in self.classes) + 2
        lines = [f"{'class':<{width}} precision  recall     f1  support"]
        for name in self.classes:
            m = self.per_class[name]
            lines.append(f"{name:<{width}} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} {int(m['support']):8d}")
        lines.append(f"accuracy {self.accuracy:.3f}")
        lines.append("confusion (rows true, columns predicted): " + " ".join(self.classes))
        lines.extend("  " + " ".join(f"{v:6d}" for v in row) for row in self.confusion)
        return "\n".join(lines)


def evaluate(model: ActionModel, sequences: Sequence[np.ndarray], labels: np.ndarray) -> Evaluation:
    predicted = np.concatenate([model.predict_proba(sequences[i : i + 1024]).argmax(1) for i in range(0, len(sequences), 1024)])
    k = len(model.classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (np.asarray(labels), predicted), 1)
    per_class = {}
    for i, name in enumerate(model.classes):
        tp = confusion[i, i]
        precision = tp / max(1, confusion[:, i].sum())
        recall = tp / max(1, confusion[i].sum())
        f1 = 2 * precision * recall / max(1e-9, precision + recall)
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": float(confusion[i].sum())}
    accuracy = float(np.trace(confusion) / max(1, confusion.sum()))
    return Evaluation(tuple(model.classes), accuracy, confusion, per_class)


def train_action_model(
    train: tuple[Sequence[np.ndarray], np.ndarray],
    val: tuple[Sequence[np.ndarray], np.ndarray],
    classes: Sequence[str],
    config: TrainConfig = TrainConfig(),
    log: Callable[[str], None] = lambda _: None,
) -> ActionModel:
    """Adam with early stopping on validation accuracy; deterministic for a seed. With ``config.members`` > 1,
    that many models from consecutive seeds, as one ``ActionEnsemble``."""
    if config.members > 1:
        members = []
        for k in range(config.members):
            one = replace(config, members=1, seed=config.seed + k)
            members.append(train_action_model(train, val, classes, one, log=lambda line, k=k: log(f"member {k + 1}/{config.members}: {line}")).net)
        return ActionModel(ActionEnsemble(members), classes)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train_x, train_y = train
    net = ActionLSTM(hidden_size=config.hidden_size, num_layers=config.num_layers, n_classes=len(classes))
    stacked = np.concatenate(list(train_x))
    net.feature_mean.copy_(torch.from_numpy(stacked.mean(0)))
    net.feature_std.copy_(torch.from_numpy(np.maximum(stacked.std(0), 1e-3)))
    model = ActionModel(net, classes)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    loss_fn = nn.CrossEntropyLoss()
    labels = torch.as_tensor(np.asarray(train_y), dtype=torch.int64)
    best_accuracy, best_state, stale = -1.0, None, 0
    for epoch in range(config.epochs):
        net.train()
        order = rng.permutation(len(train_x))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            x, lengths = pad_sequences([train_x[i] for i in idx])
            loss = loss_fn(net(_perturbed(x, net, config, generator), lengths), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        scheduler.step()
        net.eval()
        accuracy = evaluate(model, *val).accuracy
        log(f"epoch {epoch + 1:2d}  loss {total / len(order):.4f}  val accuracy {accuracy:.4f}")
        if accuracy > best_accuracy:
            best_accuracy, best_state, stale = accuracy, {k: v.clone() for k, v in net.state_dict().items()}, 0
        else:
            stale += 1
            if stale >= config.patience_epochs:
                break
    assert best_state is not None
    net.load_state_dict(best_state)
    net.eval()
    return model


def _perturbed(x: torch.Tensor, net: ActionLSTM, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """A training batch (batch, time, features) with ``config``'s feature drop-out and noise (none: ``x``)."""
    if config.feature_noise > 0:
        x = x + config.feature_noise * net.feature_std * torch.randn(x.shape, generator=generator)
    if config.feature_dropout > 0:
        dropped = torch.rand((x.shape[0], 1, x.shape[2]), generator=generator) < config.feature_dropout
        x = torch.where(dropped, net.feature_mean, x)
    return x


SYNTHETIC_SEEDS = {"train": 1, "val": 2, "test": 3}


def train_synthetic(
    out: str | os.PathLike[str],
    n_train: int = 30000,
    epochs: int = 20,
    seed: int = 0,
    unknown_below: float = 0.0,
    members: int = 1,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """Train the default action model on generated person tracks; write weights and a model card.

    Writes ``out`` (safetensors), ``out`` with ``.json`` (the card's data) and ``.md``. The
    abstention threshold ``unknown_below`` goes into the weights' metadata (calibrate it on real
    labels: ``bench/actions.py``). Returns the card.
    """
    from videolake.pipeline.actions import ACTIONS
    from videolake.pipeline.synthetic import generate_features

    n_val, n_test = max(600, n_train // 10), max(1200, n_train // 5)
    log(f"generating {n_train} train, {n_val} validation, {n_test} test sequences")
    train = generate_features(n_train, seed * 1000 + SYNTHETIC_SEEDS["train"])
    val = generate_features(n_val, seed * 1000 + SYNTHETIC_SEEDS["val"])
    test = generate_features(n_test, seed * 1000 + SYNTHETIC_SEEDS["test"])
    model = train_action_model(train, val, ACTIONS, TrainConfig(epochs=epochs, seed=seed, members=members), log=log)
    card = synthetic_card(model, test, n_train, seed, unknown_below)
    write_model_and_card(model, card, out)
    log(card["test_table"])
    return card


def synthetic_card(model: ActionModel, test: tuple[Sequence[np.ndarray], np.ndarray], n_train: int, seed: int,
                   unknown_below: float) -> dict:
    """The card's data for a model of the six default actions: its synthetic data and held-out synthetic scores."""
    from videolake.pipeline.features import FEATURE_NAMES
    from videolake.pipeline.synthetic import GENERATOR_VERSION

    result = evaluate(model, *test)
    data = json.dumps({"generator": "pipeline.synthetic", "generator_version": GENERATOR_VERSION, "n_train": n_train,
                       "n_test": len(test[1]), "seed": seed}, sort_keys=True)
    return {
        "classes": list(model.classes),
        "features": list(FEATURE_NAMES),
        "data": json.loads(data),
        "data_sha256": hashlib.sha256(data.encode()).hexdigest(),
        "test_accuracy": round(result.accuracy, 4),
        "test_table": result.table(),
        "per_class": {k: {m: round(v, 4) for m, v in d.items()} for k, d in result.per_class.items()},
        "confusion": result.confusion.tolist(),
        "unknown_below": unknown_below,
        "members": model.members,
        "parameters": sum(p.numel() for p in model.net.parameters()),
    }


def _architecture(members: int, parameters: int | None, hidden_size: int = 64) -> str:
    one = f"feature normalisation → 1-layer LSTM ({hidden_size} hidden) → MLP head"
    size = f"; {parameters / 1000:.0f}k parameters" if parameters else ""
    if members == 1:
        return one + size
    return f"{members} such models ({one}), trained from consecutive seeds, answering with their mean probability{size}"


def write_model_and_card(model: ActionModel, card: dict, out: str | os.PathLike[str], extra_metadata: dict | None = None) -> None:
    """Weights (with the threshold in their metadata), ``.json`` and ``.md`` beside them."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.metadata["unknown_below"] = str(card["unknown_below"])
    model.save(out, {"test_accuracy": str(card["test_accuracy"]), "data_sha256": card["data_sha256"], **(extra_metadata or {})})
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    out.with_suffix(".md").write_text(synthetic_card_markdown(card))


REAL_VIDEO_TARGET = 0.85  # accuracy on labelled real clips, answered and all, the default model is held to


def _threshold_rule(unknown_below: float) -> str:
    """The card's sentence on ``unknown_below``: calibrated on real labels to where the model is more likely wrong than right."""
    if unknown_below <= 0.0:
        return ("no probability threshold (`unknown_below` 0.00: calibrated on real labels, the model's answers were"
                " right more often than wrong at every confidence)")
    return (f"a top probability under {unknown_below:.2f} (calibrated on real labels: where the model is more likely"
            " wrong than right) gives `unknown`")


def synthetic_card_markdown(card: dict) -> str:
    """The default model's card: what it is, what it was trained on, and, when measured, how it does on real video."""
    synthetic = card["test_accuracy"]
    real = card.get("real_video")
    lines = ["# Action model card: videolake default action LSTM", ""]
    if real:
        meets = real["accuracy_answered"] >= REAL_VIDEO_TARGET and real["accuracy_all"] >= REAL_VIDEO_TARGET
        lines += [
            f"> **On real video** (leave-one-video-out, {real['person_clips']} labelled person clips): it answers"
            f" {1 - real['unknown_rate'] - real['no_row_rate']:.0%} of them and is right on {real['accuracy_answered']:.0%}"
            f" of those answers; always saying `{real['majority_class']}` would be right on"
            f" {real['majority_accuracy']:.0%}. " + ("That meets videolake's target." if meets else
            f"That is below videolake's target ({REAL_VIDEO_TARGET:.0%}): read an action as a hint to look at the clip,"
            " not as a finding."),
            "",
        ]
    lines += [
        f"- Classes: {', '.join(card['classes'])}; plus `unknown` and no row, decided as described below.",
        f"- Architecture: {_architecture(card.get('members', 1), card.get('parameters'))}.",
        f"- Input: one sequence per tracked person and clip window (2 s by default), {len(card['features'])} features per"
        " analysed frame (`pipeline/features.py`): the 17 COCO keypoints of the person (top-down `yolo11n-pose` on the"
        " detector's box) relative to the hips in torso lengths, torso angle, hip and knee angles, hip height above the"
        " ankles, ankle spread, box shape, detector and pose confidences, and their rates (hip velocity in body scales"
        " per second, box velocity in box heights per second, torso rotation, leg swing), the box's net displacement"
        " since the window's first frame, and the camera's own motion.",
        "- Evidence rules (`pipeline/clips.py`, applied before the model): a tracked box whose frames mostly show no"
        " person to the pose model (no plausible skeleton, pose confidence under 0.7) gets no row; fewer than 4"
        " detections, or a usable skeleton in under half of them, give `unknown` without a guess; "
        + _threshold_rule(card.get("unknown_below", 0.0))
        + "; and `running`, `sitting`, `lying` or `falling` becomes `unknown` for a box the frame's edge cuts in half"
        " its frames or more (a body entering the picture looks like a fall or a run, and one cut at the bottom, hips"
        " without legs, like a seated one).",
        "",
        "## Training data",
        "",
        "Synthetic, from `pipeline/synthetic.py` (generator version"
        f" {card['data'].get('generator_version', 1)}, {card['data']['n_train']} training sequences, seed {card['data']['seed']},"
        f" data sha256 {card['data_sha256'][:16]}): a 3D stick figure with adult proportions moved by a kinematic model of"
        " each action (a gait cycle for walking at 0.5–1.8 m/s and running at 2.2–6 m/s; standing with sway, gestures"
        " and turns; sitting on a seat, sometimes in a moving vehicle or with the legs hidden; lying on the back, front or"
        " side; falls of 0.4–1.3 s by tipping or buckling, in any direction, then lying), seen through a random camera"
        " (height, pitch, distance, heading, nine frame sizes, 4–15 analysed frames per second), with keypoint noise,"
        " drop-outs (faces, far-side limbs, legs hidden), missed detections, box noise and a moving or shaking camera in"
        " a third of the samples.",
        "",
        *([f"Plus {card['data']['real_labels']['clips']} human-labelled clips of real video (`{card['data']['real_labels']['file']}`,"
           f" sha256 {card['data']['real_labels']['sha256'][:16]}; each repeated {card['data']['real_labels']['repeats']} times),"
           " the same clips the real-video figures below come from, scored leave-one-video-out.", ""]
          if card["data"].get("real_labels") else ["No real video was used for training.", ""]),
        f"Held-out accuracy on fresh synthetic data: {synthetic:.3f}. This says the model learned the generator, not"
        " that it is right on real video: see below.",
        "",
        "## On real video",
        "",
    ]
    if real:
        lines += [
            f"Measured with `python bench/actions.py` (`videolake eval-actions`) on {real['person_clips']} human-labelled person"
            f" clips of real footage at the default settings ({real['videos']}), labelled by looking at the frames before"
            " looking at any model output; `bench/actions/labels.csv`. Per-class precision and recall, `unknown` rate,"
            " majority baseline and confusion:",
            "",
            "```",
            real["table"],
            "```",
            "",
            *(["Per video (segments pooled), and for the videos scored in segments, by a model that saw no label of that video at all:",
               "", "```", real["per_video"], real.get("whole_video_out", ""), "```", ""] if real.get("per_video") else []),
            real.get("notes", ""),
            *(["", "`unknown` thresholds chosen for each video on the other videos: "
               + ", ".join(f"{video} {t:.2f}" for video, t in sorted(real["thresholds_per_video"].items())) + "."]
              if real.get("thresholds_per_video") else []),
        ]
    else:
        lines.append("Not measured for this file: run `python bench/actions.py` on labelled real video.")
    lines += [
        "",
        "## Limits",
        "",
        "- `falling` and `lying` have no real labelled examples here (nobody falls or lies in the footage available"
        " offline); they were learned from real-proportioned synthetic bodies only, and their real-video precision is"
        " unmeasured. Treat a `falling` episode as a prompt to look at the clip, not as an alarm.",
        "- The features are in the image plane: a person seen from straight above, or lying towards the camera, looks"
        " different from the generator's average; a moving camera adds apparent motion that the model was trained to"
        " see past only partly.",
        "- A person on a bicycle or a horse is none of the six classes; the model says what they look like.",
        "- With `--pose none` and a detector without keypoints, actions rest on box motion and shape alone (see"
        " docs/models.md for what that costs).",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Training and evaluating on users' labels (``videolake train-actions LABELS --lake LAKE``).


def split_by_group(y: np.ndarray, groups: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices, stratified by class, keeping each group (label row) on one side.

    Neighbouring clips of one labelled range look alike; splitting whole ranges keeps the
    validation score honest. A class labelled by a single range is split clip by clip.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    y, groups = np.asarray(y), np.asarray(groups)
    val: list[np.ndarray] = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        class_groups = np.unique(groups[members])
        if len(class_groups) >= 2:
            chosen = rng.permutation(class_groups)[: min(len(class_groups) - 1, max(1, round(val_fraction * len(class_groups))))]
            val.append(members[np.isin(groups[members], chosen)])
        elif len(members) >= 2:
            val.append(rng.permutation(members)[: min(len(members) - 1, max(1, round(val_fraction * len(members))))])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    return train_idx, val_idx


def sequences_sha256(classes: Sequence[str], y: np.ndarray, sequences: Sequence[np.ndarray]) -> str:
    """A hash of exactly what a model is trained on: class names, labels and feature sequences."""
    digest = hashlib.sha256(json.dumps(list(classes)).encode())
    digest.update(np.asarray(y, dtype=np.int64).tobytes())
    for s in sequences:
        digest.update(np.ascontiguousarray(s, dtype=np.float32).tobytes())
    return digest.hexdigest()


def majority_baseline(train_y: np.ndarray, eval_y: np.ndarray) -> tuple[int, float]:
    """The class most frequent in training and the accuracy of always predicting it on ``eval_y``."""
    majority = int(np.bincount(np.asarray(train_y)).argmax())
    return majority, float((np.asarray(eval_y) == majority).mean()) if len(eval_y) else 0.0


def train_on_labels(
    sequences: Sequence[np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    classes: Sequence[str],
    out: str | os.PathLike[str],
    config: TrainConfig = TrainConfig(),
    val_fraction: float = 0.2,
    provenance: dict | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """Train on labelled sequences with a validation split and early stopping; write weights and a card.

    Writes ``out`` (safetensors), ``out`` with ``.json`` and ``.md`` (the model card) and
    ``.confusion.png`` (validation confusion matrix). Returns the card. Deterministic for a seed.
    """
    from videolake.pipeline.errors import ConfigError
    from videolake.pipeline.features import FEATURE_NAMES
    from videolake.pipeline.plots import confusion_png

    y = np.asarray(y, dtype=np.int64)
    train_idx, val_idx = split_by_group(y, groups, val_fraction, config.seed)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise ConfigError(f"too few labelled sequences ({len(y)}) for a training and a validation split")
    train = ([sequences[i] for i in train_idx], y[train_idx])
    val = ([sequences[i] for i in val_idx], y[val_idx])
    log(f"{len(train_idx)} training and {len(val_idx)} validation sequences, classes {', '.join(classes)}")
    model = train_action_model(train, val, classes, config, log=log)
    result = evaluate(model, *val)
    majority, baseline = majority_baseline(train[1], val[1])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    confusion_path = out.with_suffix(".confusion.png")
    card = {
        "classes": list(classes),
        "features": list(FEATURE_NAMES),
        "data": {**(provenance or {}), "n_sequences": int(len(y)), "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
                 "per_class": {c: int((y == i).sum()) for i, c in enumerate(classes)}},
        "data_sha256": sequences_sha256(classes, y, sequences),
        "train_config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "parameters": sum(p.numel() for p in model.net.parameters()),
        "val_accuracy": round(result.accuracy, 4),
        "majority_baseline": {"class": classes[majority], "val_accuracy": round(baseline, 4)},
        "per_class": {k: {m: round(v, 4) for m, v in d.items()} for k, d in result.per_class.items()},
        "confusion": result.confusion.tolist(),
        "confusion_png": confusion_path.name,
    }
    model.save(out, {"val_accuracy": str(card["val_accuracy"]), "data_sha256": card["data_sha256"], "trained_on": "labels"})
    confusion_png(result.confusion, classes, confusion_path, f"validation confusion ({len(val_idx)} clips)")
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    out.with_suffix(".md").write_text(_labelled_card_markdown(card, result, out.name))
    log(result.table())
    return card


def _labelled_card_markdown(card: dict, result: Evaluation, weights_name: str) -> str:
    data = card["data"]
    counts = ", ".join(f"{c} {n}" for c, n in data["per_class"].items())
    return f"""# Action model card: {weights_name}

- Classes (from the labels): {', '.join(card['classes'])} (plus `unknown` and no row, by the same evidence rules as the default model)
- Architecture: {_architecture(card['train_config'].get('members', 1), card.get('parameters'), card['train_config']['hidden_size'])}
- Features per frame ({len(card['features'])}): {', '.join(card['features'])}, computed from the lake's detections
  by the same code as inference (`videolake.pipeline.features.window_features`, one sequence per track and clip window)
- Labels: `{data.get('labels', '?')}` (sha256 {str(data.get('labels_sha256', ''))[:16]}), lake config {data.get('config_hash', '?')},
  clip windows of {data.get('clip_seconds', '?')} s
- Sequences: {data['n_sequences']} ({counts}); {data['n_train']} train, {data['n_val']} validation (whole label rows per side)
- Data sha256 (features + labels): {card['data_sha256'][:16]}
- Validation accuracy **{card['val_accuracy']:.3f}**; majority-class baseline ({card['majority_baseline']['class']})
  {card['majority_baseline']['val_accuracy']:.3f}

```
{result.table()}
```

![validation confusion matrix]({card['confusion_png']})

## Limits
- Validation comes from the same labels file; measure on labels the model never saw with `videolake eval-actions`.
- The model only knows the classes of its labels and the detector/tracker of the lake configuration it was trained on.
"""


def evaluate_on_labels(model: ActionModel, sequences: Sequence[np.ndarray], y: np.ndarray, classes: Sequence[str]) -> Evaluation:
    """Score ``model`` on labelled sequences whose ``y`` index ``classes`` (the labels' own class list).

    Every labelled class must be one the model knows; the report is in the model's classes.
    """
    from videolake.pipeline.errors import ConfigError

    unknown = [c for c in classes if c not in model.classes]
    if unknown:
        raise ConfigError(f"the labels use class(es) the model does not know: {', '.join(unknown)}; "
                          f"the model's classes: {', '.join(model.classes)}")
    to_model = np.array([model.classes.index(c) for c in classes], dtype=np.int64)
    return evaluate(model, sequences, to_model[np.asarray(y, dtype=np.int64)])
