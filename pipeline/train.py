"""Training and evaluating the action LSTM (CPU is enough: the model is small)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from videolake.pipeline.actions import ActionLSTM, ActionModel, pad_sequences

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
    """Adam with early stopping on validation accuracy; deterministic for a seed."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
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
            loss = loss_fn(net(x, lengths), labels[idx])
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


SYNTHETIC_SEEDS = {"train": 1, "val": 2, "test": 3}


def train_synthetic(
    out: str | os.PathLike[str],
    n_train: int = 20000,
    epochs: int = 20,
    seed: int = 0,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """Train the default action model on synthetic tracks; write weights and a model card.

    Writes ``out`` (safetensors), ``out`` with ``.json`` (the card's data) and ``.md``.
    Returns the card.
    """
    from videolake.pipeline.actions import ACTIONS
    from videolake.pipeline.features import FEATURE_NAMES
    from videolake.pipeline.synthetic import generate_features

    n_val, n_test = max(500, n_train // 8), max(1000, n_train // 4)
    log(f"generating {n_train} train, {n_val} validation, {n_test} test sequences")
    train = generate_features(n_train, seed * 1000 + SYNTHETIC_SEEDS["train"])
    val = generate_features(n_val, seed * 1000 + SYNTHETIC_SEEDS["val"])
    test = generate_features(n_test, seed * 1000 + SYNTHETIC_SEEDS["test"])
    model = train_action_model(train, val, ACTIONS, TrainConfig(epochs=epochs, seed=seed), log=log)
    result = evaluate(model, *test)
    data = json.dumps({"generator": "pipeline.synthetic", "n_train": n_train, "n_val": n_val, "n_test": n_test, "seed": seed}, sort_keys=True)
    card = {
        "classes": list(ACTIONS),
        "features": list(FEATURE_NAMES),
        "data": json.loads(data),
        "data_sha256": hashlib.sha256(data.encode()).hexdigest(),
        "test_accuracy": round(result.accuracy, 4),
        "per_class": {k: {m: round(v, 4) for m, v in d.items()} for k, d in result.per_class.items()},
        "confusion": result.confusion.tolist(),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out, {"test_accuracy": str(card["test_accuracy"]), "data_sha256": card["data_sha256"]})
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    out.with_suffix(".md").write_text(_model_card_markdown(card, result))
    log(result.table())
    return card


def _model_card_markdown(card: dict, result: Evaluation) -> str:
    return f"""# Action model card: videolake default action LSTM

- Classes: {', '.join(card['classes'])} (plus `unknown` for tracks with too few frames in a clip, decided outside the model)
- Architecture: feature normalisation → 1-layer LSTM (64 hidden) → MLP head; about 25k parameters
- Features per frame ({len(card['features'])}): {', '.join(card['features'])}
- Training data: synthetic detector output for one person per clip (`pipeline/synthetic.py`):
  frame rates 4–30 fps with timestamp jitter, clips of 1–4 s, seven frame sizes from 176x144 to 1920x1080,
  people 10–100 % of the frame height (boxes clipped at the frame's edges), upper-body close-ups
  (e.g. a seated person), box noise of 0.5–6 % of the box height, camera shake, missed detections
  and occlusion gaps, depth motion,
  a detector with a fall class (70 %) or without one (30 %). Data sha256 {card['data_sha256'][:16]}, {card['data']}.
- Held-out accuracy on fresh synthetic data: **{card['test_accuracy']:.3f}**

```
{result.table()}
```

## Limits
- Trained on synthetic kinematics only, never on labelled real video: treat the labels as a motion summary
  (still / slow / fast / sudden drop / down), not a validated clinical fall detector.
- Walking vs standing and walking vs running are the usual confusions; a person riding a bike moves like a runner.
- The `falling` and `lying` classes lean on the detector's fall class where it has one (the default detector does);
  with a detector without one (e.g. COCO `person`) they rest on box shape and motion alone.
- One person per track; crowds with frequent id switches give short, noisy sequences.
- Train your own classes on your labels: `videolake train-actions` (see README).
"""


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

- Classes (from the labels): {', '.join(card['classes'])} (plus `unknown` for tracks with too few detections in a clip)
- Architecture: feature normalisation → LSTM ({card['train_config']['hidden_size']} hidden) → MLP head
- Features per frame ({len(card['features'])}): {', '.join(card['features'])}, computed from the lake's detections
  by the same code as inference (`videolake.pipeline.features.track_features`, one sequence per track and clip window)
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
