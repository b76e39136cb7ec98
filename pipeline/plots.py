"""Static figures with matplotlib (Agg backend, no display): timelines, counts, confusion matrices.

Each function takes plain data and writes one PNG; nothing here reads the lake.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["ClipSpan", "action_colors", "timeline_png", "bucket_counts_png", "confusion_png"]

_UNKNOWN_COLOR = "#b0b0b0"


@dataclass(frozen=True)
class ClipSpan:
    track_id: int
    t_start_s: float
    t_end_s: float
    action: str


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def action_colors(actions: Sequence[str]) -> dict[str, str]:
    """A stable colour per action (same action, same colour in every figure); ``unknown`` is grey."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    palette = colormaps["tab10"].colors
    known = sorted({a for a in actions if a != "unknown"})
    colors = {a: to_hex(palette[i % len(palette)]) for i, a in enumerate(known)}
    colors["unknown"] = _UNKNOWN_COLOR
    return colors


def timeline_png(
    spans: Sequence[ClipSpan], path: str | os.PathLike[str], title: str, duration_s: float | None = None,
    colors: dict[str, str] | None = None,
) -> Path:
    """Tracks on the y axis, time on the x axis, one bar per clip coloured by its action."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    colors = colors or action_colors([s.action for s in spans])
    track_ids = sorted({s.track_id for s in spans})
    row = {t: i for i, t in enumerate(track_ids)}
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.32 * max(1, len(track_ids))), dpi=100)
    for s in spans:
        end = min(s.t_end_s, duration_s) if duration_s else s.t_end_s
        ax.broken_barh([(s.t_start_s, max(0.0, end - s.t_start_s))], (row[s.track_id] - 0.4, 0.8),
                       facecolors=colors.get(s.action, _UNKNOWN_COLOR), edgecolor="white", linewidth=0.5)
    ax.set_yticks(range(len(track_ids)), [f"#{t}" for t in track_ids])
    ax.set_ylim(-0.6, max(0.6, len(track_ids) - 0.4))
    ax.invert_yaxis()
    ax.set_xlim(0, duration_s or max((s.t_end_s for s in spans), default=1.0))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("track")
    ax.set_title(title, fontsize=10)
    present = sorted({s.action for s in spans})
    if present:
        ax.legend(handles=[Patch(color=colors.get(a, _UNKNOWN_COLOR), label=a) for a in present],
                  loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    if not spans:
        ax.text(0.5, 0.5, "no tracked person", transform=ax.transAxes, ha="center", va="center", color="grey")
    fig.tight_layout()
    return _save(fig, path, plt)


def bucket_counts_png(
    bucket_start_s: Sequence[float], action: Sequence[str], n_clips: Sequence[int], bucket_s: float,
    path: str | os.PathLike[str], title: str, colors: dict[str, str] | None = None,
) -> Path:
    """Stacked bars: clips per action in each time bucket."""
    plt = _pyplot()
    colors = colors or action_colors(list(action))
    buckets = sorted(set(bucket_start_s))
    actions = sorted(set(action))
    counts = np.zeros((len(actions), len(buckets)))
    for b, a, n in zip(bucket_start_s, action, n_clips):
        counts[actions.index(a), buckets.index(b)] += n
    fig, ax = plt.subplots(figsize=(9, 3), dpi=100)
    bottom = np.zeros(len(buckets))
    for i, a in enumerate(actions):
        ax.bar(buckets, counts[i], width=bucket_s * 0.9, align="edge", bottom=bottom, label=a, color=colors.get(a, _UNKNOWN_COLOR))
        bottom += counts[i]
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"time (s), buckets of {bucket_s:g} s")
    ax.set_ylabel("clips")
    ax.set_title(title, fontsize=10)
    if actions:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return _save(fig, path, plt)


def confusion_png(confusion: np.ndarray, classes: Sequence[str], path: str | os.PathLike[str], title: str) -> Path:
    """The confusion matrix (rows true, columns predicted) with counts in the cells."""
    plt = _pyplot()
    confusion = np.asarray(confusion)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.6 + 0.8 * k, 1.4 + 0.7 * k), dpi=100)
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    high = confusion.max() / 2 if confusion.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center",
                    color="white" if confusion[i, j] > high else "black", fontsize=8)
    fig.tight_layout()
    return _save(fig, path, plt)


def _save(fig, path: str | os.PathLike[str], plt) -> Path:  # noqa: ANN001 - matplotlib objects
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return out
