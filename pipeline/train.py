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

from pipeline.actions import ActionLSTM, ActionModel, pad_sequences

__all__ = ["TrainConfig", "Evaluation", "train_action_model", "evaluate", "train_synthetic"]


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
    from pipeline.actions import ACTIONS
    from pipeline.features import FEATURE_NAMES
    from pipeline.synthetic import generate_features

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
