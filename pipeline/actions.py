"""The action model: an LSTM over a track's per-frame features inside one clip window."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from videolake.pipeline.errors import ModelError
from videolake.pipeline.features import FEATURE_NAMES, N_FEATURES

__all__ = ["ACTIONS", "UNKNOWN", "WHOLE_BODY_ACTIONS", "ActionLSTM", "ActionEnsemble", "ActionModel", "ActionPrediction"]

ACTIONS = ("standing", "walking", "running", "sitting", "lying", "falling")
UNKNOWN = "unknown"
# Told from the whole body's shape, its legs against its hips, or its speed across the picture: never said of a box
# the frame's edge cuts (``clips.Evidence.PARTIAL``), whose shape and motion are then the edge's as much as the body's.
# A body cut at the bottom has hips and no legs, which is what sitting looks like to the features.
WHOLE_BODY_ACTIONS = ("running", "sitting", "lying", "falling")


class ActionLSTM(nn.Module):
    """Normalise features, run an LSTM over the (padded) sequence, classify its last state."""

    def __init__(self, n_features: int = N_FEATURES, hidden_size: int = 64, num_layers: int = 1, n_classes: int = len(ACTIONS)) -> None:
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.lstm = nn.LSTM(n_features, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, n_classes))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x`` (batch, time, features) padded at the end, ``lengths`` (batch,) → logits (batch, classes)."""
        x = (x - self.feature_mean) / self.feature_std
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return self.head(h_n[-1])


class ActionEnsemble(nn.Module):
    """``ActionLSTM``s trained alike from different seeds, answering with their mean probability.

    ``forward`` returns the log of that mean, so a softmax of it gives the mean back: the ensemble
    stands wherever one ``ActionLSTM`` does. One LSTM trained on a few hundred real clips swings
    with its seed (on a held-out camera, 0.88 to 0.91 accuracy for three seeds); their mean is steadier.
    """

    def __init__(self, members: Sequence[ActionLSTM]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def lstm(self) -> nn.LSTM:
        return self.members[0].lstm

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x, lengths), dim=1) for m in self.members]).mean(0)
        return torch.log(probs.clamp_min(1e-12))


def pad_sequences(sequences: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length (t, features) arrays into a zero-padded batch and its lengths."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
    batch = torch.zeros(len(sequences), int(lengths.max()), N_FEATURES, dtype=torch.float32)
    for i, s in enumerate(sequences):
        batch[i, : len(s)] = torch.from_numpy(np.asarray(s, dtype=np.float32))
    return batch, lengths


@dataclass(frozen=True)
class ActionPrediction:
    action: str
    confidence: float | None
    probs: list[float] | None


class ActionModel:
    """A trained ``ActionLSTM`` with its class names, loaded from safetensors (never pickle)."""

    def __init__(self, net: ActionLSTM | ActionEnsemble, classes: Sequence[str], metadata: dict[str, str] | None = None) -> None:
        self.net = net.eval()
        self.classes = tuple(classes)
        self.metadata = dict(metadata or {})

    @property
    def members(self) -> int:
        """How many LSTMs answer (``ActionEnsemble``), 1 for one."""
        return len(self.net.members) if isinstance(self.net, ActionEnsemble) else 1

    @property
    def unknown_below(self) -> float:
        """A top probability under this is reported as ``unknown`` (calibrated when the model was trained)."""
        return float(self.metadata.get("unknown_below", 0.0))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ActionModel:
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(os.fspath(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
            state = load_file(os.fspath(path))
            classes = json.loads(meta["classes"])
            features = json.loads(meta.get("features", json.dumps(list(FEATURE_NAMES))))
            if list(features) != list(FEATURE_NAMES):
                new, gone = sorted(set(FEATURE_NAMES) - set(features)), sorted(set(features) - set(FEATURE_NAMES))
                raise ModelError(f"{path}: model was trained on {len(features)} features, this version computes {len(FEATURE_NAMES)}"
                                 f" (new: {', '.join(new) or 'none'}; gone: {', '.join(gone) or 'none'}); train it again on"
                                 " its labels with videolake train-actions")
            def member() -> ActionLSTM:
                return ActionLSTM(hidden_size=int(meta.get("hidden_size", 64)), num_layers=int(meta.get("num_layers", 1)),
                                  n_classes=len(classes))

            members = int(meta.get("members", 1))  # models saved before ensembles are one LSTM
            net = member() if members == 1 else ActionEnsemble([member() for _ in range(members)])
            net.load_state_dict(state)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - safetensors/torch raise many types for a bad file
            raise ModelError(f"cannot load action model {path}: {exc}") from None
        return cls(net, classes, meta)

    def save(self, path: str | os.PathLike[str], extra_metadata: dict[str, str] | None = None) -> None:
        from safetensors.torch import save_file

        meta = {
            "classes": json.dumps(list(self.classes)),
            "features": json.dumps(list(FEATURE_NAMES)),
            "hidden_size": str(self.net.lstm.hidden_size),
            "num_layers": str(self.net.lstm.num_layers),
            "members": str(self.members),
            **self.metadata,
            **(extra_metadata or {}),
        }
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, os.fspath(path), metadata=meta)

    @torch.inference_mode()
    def predict_proba(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities (n, classes) for feature sequences of shape (t_i, features), t_i >= 1."""
        if not sequences:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        x, lengths = pad_sequences(sequences)
        return torch.softmax(self.net(x, lengths), dim=1).numpy()

    def classify(self, sequences: Sequence[np.ndarray], known: Sequence[bool] | None = None,
                 whole_body: Sequence[bool] | None = None) -> list[ActionPrediction]:
        """One prediction per sequence. ``known[i]`` False (too little evidence) gives ``unknown`` without a guess;
        a top probability under ``unknown_below`` gives ``unknown`` with the probabilities kept, and so does a top
        class of ``WHOLE_BODY_ACTIONS`` where ``whole_body[i]`` is False (the frame cuts the body)."""
        known = [True] * len(sequences) if known is None else list(known)
        whole_body = [True] * len(sequences) if whole_body is None else list(whole_body)
        keep = [i for i, s in enumerate(sequences) if known[i] and len(s) > 0]
        probs = self.predict_proba([sequences[i] for i in keep])
        out = [ActionPrediction(UNKNOWN, None, None) for _ in sequences]
        for row, i in zip(probs, keep):
            best = int(row.argmax())
            rounded = [round(float(p), 5) for p in row]
            if row[best] < self.unknown_below or (not whole_body[i] and self.classes[best] in WHOLE_BODY_ACTIONS):
                out[i] = ActionPrediction(UNKNOWN, None, rounded)
            else:
                out[i] = ActionPrediction(self.classes[best], float(row[best]), rounded)
        return out
