"""Test action models: the embedded LSTM with its head set to answer one action, for paths that need it
(alert events for `falling`) on real video where the real model would rarely answer it."""

from __future__ import annotations

from pathlib import Path

import torch

from videolake.pipeline.actions import ActionModel
from videolake.pipeline.models import resolve_actions


def one_action_model(path: Path, action: str) -> Path:
    """The embedded model, saved to ``path``, whose every classified clip is ``action`` (confidence ~1)."""
    model = ActionModel.load(resolve_actions("default").path)
    for net in getattr(model.net, "members", [model.net]):  # one LSTM, or each of an ensemble's
        last = net.head[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(-10.0)
            last.bias[model.classes.index(action)] = 10.0
    model.save(path, {"unknown_below": "0.0", "test_model": f"always {action}"})
    return path
