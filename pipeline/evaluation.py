"""Scoring an action model against human labels, the way inference would answer.

Every labelled (track, clip window) gets what a run with the model would write for it: no row
(not a person), ``unknown`` (too little evidence, or a top probability under the model's
threshold), or one of the model's classes. A labelled clip window with no tracked box of its own
(the person was never tracked there, or their track is another labelled person's) got no row. ``LabelReport`` then gives per-class precision and
recall, accuracy with and without abstentions, the ``unknown`` rate, the majority baseline, a
confusion matrix, how often boxes labelled ``none`` (not a person) got an action, and the share of
person clips given an action that no label in the set has (e.g. ``running`` on footage where
nobody runs).

Label names the scorer understands besides the model's classes: ``none`` (the box is not a
person: no action is right). Other names (``riding``, a class the model lacks) are reported as
what the model said for them, and scored nowhere.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from videolake.pipeline.actions import UNKNOWN, ActionModel
from videolake.pipeline.clips import Evidence, classify_person_clips

if TYPE_CHECKING:
    from videolake.pipeline.labels import LabelledSequences

__all__ = ["NOT_A_PERSON", "NO_ACTION", "LabelReport", "predict_like_inference", "score", "score_labelled"]

NOT_A_PERSON = "none"    # the label for a box that is not a person
NO_ACTION = "(no row)"   # what inference writes for a box it takes for no person


def score_labelled(model: ActionModel, data: LabelledSequences) -> LabelReport:
    """The model on labelled clips as a run would answer them, labelled people that got no track included."""
    written = predict_like_inference(model, data.sequences, data.evidence)
    return score(model.classes, [data.classes[i] for i in data.y], written, [m.action for m in data.missed])


def predict_like_inference(model: ActionModel, sequences: Sequence[np.ndarray], evidence: Sequence[Evidence]) -> list[str]:
    """What a run would write for each (track, window): a class, ``unknown`` or ``NO_ACTION``."""
    rows = [i for i, e in enumerate(evidence) if e is not Evidence.NOT_A_PERSON]
    predictions = classify_person_clips(model, [sequences[i] for i in rows], [evidence[i] for i in rows])
    out = [NO_ACTION] * len(sequences)
    for i, p in zip(rows, predictions):
        out[i] = p.action
    return out


@dataclass
class LabelReport:
    classes: tuple[str, ...]                   # the model's classes that the labels use, in model order
    confusion: np.ndarray                      # rows: true class; columns: classes, then unknown, then no row
    per_class: dict[str, dict[str, float]]
    n_person_clips: int
    accuracy_all: float                        # unknown and no row count as wrong
    accuracy_answered: float                   # over clips that got a class
    unknown_rate: float
    no_row_rate: float                         # labelled people that got no row
    majority_class: str
    majority_accuracy: float
    absent_action_rate: float                  # person clips given a class no label has
    absent_actions: dict[str, int]
    none_labels: int = 0
    none_given_action: int = 0
    none_given_unknown: int = 0
    untracked: int = 0                         # labelled people (in ``no_row_rate``) with no tracked box of their own
    other_labels: dict[str, Counter] = field(default_factory=dict)  # label -> what was written

    def table(self) -> str:
        width = max([len(c) for c in self.classes] + [8]) + 2
        columns = [*self.classes, UNKNOWN, "no row"]
        lines = [f"{'class':<{width}} precision  recall  support"]
        for name in self.classes:
            m = self.per_class[name]
            lines.append(f"{name:<{width}} {m['precision']:9.3f} {m['recall']:7.3f} {int(m['support']):8d}")
        lines.append(f"person clips {self.n_person_clips}: accuracy {self.accuracy_all:.3f} (unknown and no row count as wrong), "
                     f"{self.accuracy_answered:.3f} on the {1 - self.unknown_rate - self.no_row_rate:.1%} answered; "
                     f"unknown {self.unknown_rate:.1%}, no row {self.no_row_rate:.1%}"
                     + (f" ({self.untracked} with no tracked box of their own)" if self.untracked else ""))
        lines.append(f"majority baseline ({self.majority_class}): {self.majority_accuracy:.3f}")
        absent = ", ".join(f"{a} {n}" for a, n in sorted(self.absent_actions.items())) or "none"
        lines.append(f"actions no label has: {self.absent_action_rate:.1%} of person clips ({absent})")
        if self.none_labels:
            lines.append(f"not a person ('none'): {self.none_labels} clips, {self.none_given_action} given an action, "
                         f"{self.none_given_unknown} unknown, {self.none_labels - self.none_given_action - self.none_given_unknown} no row")
        for label, said in sorted(self.other_labels.items()):
            lines.append(f"not scored ({label!r} is not a model class): " + ", ".join(f"{a} {n}" for a, n in said.most_common()))
        lines.append("confusion (rows true, columns written): " + " ".join(columns))
        lines.extend(f"  {name:<{width}}" + " ".join(f"{v:6d}" for v in row) for name, row in zip(self.classes, self.confusion))
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "classes": list(self.classes), "confusion_columns": [*self.classes, UNKNOWN, "no row"],
            "confusion": self.confusion.tolist(), "per_class": self.per_class, "person_clips": self.n_person_clips,
            "accuracy_all": round(self.accuracy_all, 4), "accuracy_answered": round(self.accuracy_answered, 4),
            "unknown_rate": round(self.unknown_rate, 4), "no_row_rate": round(self.no_row_rate, 4),
            "majority_class": self.majority_class, "majority_accuracy": round(self.majority_accuracy, 4),
            "absent_action_rate": round(self.absent_action_rate, 4), "absent_actions": self.absent_actions,
            "none_labels": self.none_labels, "none_given_action": self.none_given_action,
            "none_given_unknown": self.none_given_unknown, "untracked": self.untracked,
            "other_labels": {k: dict(v) for k, v in self.other_labels.items()},
        }


def score(model_classes: Sequence[str], truth: Sequence[str], written: Sequence[str], missed: Sequence[str] = ()) -> LabelReport:
    """Compare labels (``truth``) with what inference wrote for the same clips (``written``).

    ``missed``: the labels of clips with no tracked box of their own (``LabelledSequences.missed``): no row was
    written for them, which is wrong for a person and right for ``none``."""
    truth, written = [*truth, *missed], [*written, *[NO_ACTION] * len(missed)]
    labelled = tuple(c for c in model_classes if c in set(truth))
    said: dict[str, Counter] = {}
    for t, w in zip(truth, written):
        said.setdefault(t, Counter())[w] += 1
    columns = [*labelled, UNKNOWN, NO_ACTION]
    confusion = np.array([[said.get(t, Counter())[w] for w in columns] for t in labelled], dtype=np.int64).reshape(
        len(labelled), len(columns))
    absent: Counter = sum((Counter({w: n for w, n in said[t].items() if w not in columns}) for t in labelled), Counter())
    support = {t: sum(said[t].values()) for t in labelled}
    n = sum(support.values())
    correct = sum(said[t][t] for t in labelled)
    unknown = sum(said[t][UNKNOWN] for t in labelled)
    no_row = sum(said[t][NO_ACTION] for t in labelled)
    per_class = {}
    for c in labelled:
        predicted = sum(said[t][c] for t in labelled)
        per_class[c] = {"precision": round(said[c][c] / predicted, 4) if predicted else 0.0,
                        "recall": round(said[c][c] / support[c], 4) if support[c] else 0.0, "support": support[c]}
    majority = max(support, key=support.get) if support else ""
    none = said.get(NOT_A_PERSON, Counter())
    return LabelReport(
        classes=labelled, confusion=confusion, per_class=per_class, n_person_clips=n,
        accuracy_all=correct / n if n else 0.0,
        accuracy_answered=correct / (n - unknown - no_row) if n - unknown - no_row else 0.0,
        unknown_rate=unknown / n if n else 0.0, no_row_rate=no_row / n if n else 0.0,
        majority_class=majority, majority_accuracy=support.get(majority, 0) / n if n else 0.0,
        absent_action_rate=sum(absent.values()) / n if n else 0.0, absent_actions=dict(absent),
        none_labels=sum(none.values()), none_given_action=sum(v for w, v in none.items() if w not in (UNKNOWN, NO_ACTION)),
        none_given_unknown=none[UNKNOWN], untracked=sum(1 for t in missed if t in labelled),
        other_labels={t: c for t, c in said.items() if t not in labelled and t != NOT_A_PERSON},
    )
