"""Action labels from users, and the training sequences they select from the lake.

A labels file (CSV or Parquet) has one row per labelled time range::

    video_id or uri, t_start_s, t_end_s, action[, track_id]

``video_id`` may be a lake video id or the source's URI (``uri`` or ``video`` columns are
accepted too). Without ``track_id`` the label applies to every track seen in the range.

Sequences are built exactly as inference builds them (``videolake.pipeline.clips``): per track and
clip window ``k`` (``[k * clip_seconds, (k + 1) * clip_seconds)``), the track's detections
in the window, rates carried from its last detection in window ``k - 1``, features from
``videolake.pipeline.features.track_features``. A (track, window) gets the label that covers most of
the window, when that label covers at least half of it; windows with fewer than
``min_track_frames`` detections are skipped (inference calls them ``unknown``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from videolake.pipeline.clips import clip_bounds, clip_index
from videolake.pipeline.errors import ConfigError, LakeError
from videolake.pipeline.features import TrackSeries, is_fall_class, person_class_ids, track_features

__all__ = ["LabelRow", "Labels", "LabelledSequences", "read_labels", "resolve_labels", "LakeConfig", "lake_config",
           "build_sequences", "load_labelled_sequences"]

_VIDEO_COLUMNS = ("video_id", "uri", "video")
_MIN_COVERAGE = 0.5
_MAX_LISTED = 8


@dataclass(frozen=True)
class LabelRow:
    row: int          # 1-based data row of the file (the header is not a row)
    video_id: str
    t_start_s: float
    t_end_s: float
    action: str
    track_id: int | None


@dataclass(frozen=True)
class Labels:
    rows: tuple[LabelRow, ...]
    classes: tuple[str, ...]  # sorted: users name their own classes
    source: str
    sha256: str               # of the file's bytes

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class LakeConfig:
    """What building sequences needs to know about one configuration of the lake."""

    config_hash: str
    clip_seconds: float
    min_track_frames: int


@dataclass
class LabelledSequences:
    """Feature sequences (t_i, N_FEATURES), their class indices and where each came from."""

    sequences: list[np.ndarray]
    y: np.ndarray                              # (n,) indices into ``classes``
    classes: tuple[str, ...]
    groups: np.ndarray                         # (n,) label row each sequence came from
    keys: list[tuple[str, int, int]]           # (video_id, track_id, clip_index)
    config: LakeConfig
    rows_without_sequences: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sequences)

    def counts(self) -> dict[str, int]:
        return {c: int((self.y == i).sum()) for i, c in enumerate(self.classes)}


def read_labels(path: str | os.PathLike[str]) -> pa.Table:
    """The labels file as a table (CSV or Parquet, by extension)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"labels file not found: {p}")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(p)
        if p.suffix.lower() in (".csv", ".tsv", ".txt"):
            import pyarrow.csv as pcsv

            # Types are inferred; a column with a stray word stays text and the row check names the row.
            return pcsv.read_csv(p, parse_options=pcsv.ParseOptions(delimiter="\t" if p.suffix.lower() == ".tsv" else ","))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ConfigError(f"labels file {p} cannot be read: {str(exc).splitlines()[0]}") from None
    raise ConfigError(f"labels file {p} must be .csv or .parquet, got {p.suffix or 'no extension'}")


def resolve_labels(
    table: pa.Table, videos: dict[str, str], source: str = "labels", sha256: str = "", base_dir: Path | None = None,
) -> Labels:
    """Check every row and map each video reference to a lake ``video_id``.

    ``videos`` maps every accepted reference (video ids and URIs) to its video id; relative
    local paths are resolved against the working directory, then ``base_dir``. All problems
    are reported at once, naming the offending rows.
    """
    columns = set(table.column_names)
    video_col = next((c for c in _VIDEO_COLUMNS if c in columns), None)
    missing = [c for c in ("t_start_s", "t_end_s", "action") if c not in columns]
    if video_col is None:
        missing.insert(0, "video_id (or uri)")
    if missing:
        raise ConfigError(f"{source}: missing column(s) {', '.join(missing)}; found {', '.join(table.column_names) or 'none'}")
    data = {c: table.column(c).to_pylist() for c in table.column_names}
    problems: dict[str, list[int]] = defaultdict(list)
    rows: list[LabelRow] = []
    for i in range(table.num_rows):
        n = i + 1
        ref = _text(data[video_col][i])
        video_id = _resolve_video(ref, videos, base_dir)
        start, end = _number(data["t_start_s"][i]), _number(data["t_end_s"][i])
        action = _text(data["action"][i])
        track = _number(data["track_id"][i]) if "track_id" in data else None
        has_track = "track_id" in data and _text(data["track_id"][i]) != ""
        if not ref:
            problems["empty video"].append(n)
        elif video_id is None:
            problems[f"unknown video {ref!r} (not in the lake)"].append(n)
        if start is None or end is None:
            problems["t_start_s/t_end_s not a number"].append(n)
        elif start < 0:
            problems["negative t_start_s"].append(n)
        elif end <= start:
            problems["inverted time range (t_end_s <= t_start_s)"].append(n)
        if not action:
            problems["empty action"].append(n)
        if has_track and (track is None or not float(track).is_integer()):
            problems["track_id not an integer"].append(n)
        if video_id is not None and start is not None and end is not None and action:
            rows.append(LabelRow(n, video_id, start, end, action, int(track) if has_track and track is not None else None))
    if problems:
        raise ConfigError(f"{source}: bad rows (rows count from 1 after the header): " + "; ".join(
            f"{what}: {_rows_text(numbers)}" for what, numbers in problems.items()))
    classes = tuple(sorted({r.action for r in rows}))
    if len(classes) < 2 and rows:
        raise ConfigError(f"{source}: need at least 2 action classes to train or evaluate, got {list(classes)}")
    if not rows:
        raise ConfigError(f"{source}: no label rows")
    return Labels(tuple(rows), classes, source, sha256)


def lake_config(con: duckdb.DuckDBPyConnection, video_ids: set[str], config_hash: str | None = None) -> LakeConfig:
    """The configuration whose results cover every labelled video (the latest run's, unless given)."""
    found = con.execute(
        "SELECT v.config_hash, count(DISTINCT v.video_id) AS n, max(r.finished_at) AS last, any_value(r.config) AS config "
        "FROM videos v LEFT JOIN runs r ON r.run_id = v.run_id "
        "WHERE v.status = 'ok' AND list_contains(?, v.video_id) GROUP BY 1 ORDER BY last DESC NULLS LAST, 1",
        [sorted(video_ids)],
    ).fetchall()
    covering = [r for r in found if r[1] == len(video_ids)]
    if config_hash is not None:
        covering = [r for r in covering if r[0] == config_hash]
        if not covering:
            raise ConfigError(f"config_hash {config_hash!r} has no ok results for every labelled video")
    if not covering:
        raise ConfigError("no single configuration of the lake has ok results for every labelled video; "
                          "analyse them with one configuration first (or pass --config-hash)")
    chosen, config_json = covering[0][0], covering[0][3]
    settings = json.loads(config_json) if config_json else {}
    return LakeConfig(chosen, float(settings.get("clip_seconds", 2.0)), int(settings.get("min_track_frames", 4)))


def build_sequences(con: duckdb.DuckDBPyConnection, labels: Labels, config: LakeConfig) -> LabelledSequences:
    """One sequence per labelled (video, track, clip window), computed as inference computes it."""
    clip_s = config.clip_seconds
    persons = _person_class_names(con, config.config_hash)
    best: dict[tuple[str, int, int], tuple[float, int, str]] = {}  # key -> (coverage, label row, action)
    tracks_by_video: dict[str, dict[int, _Track]] = {}
    for video_id in sorted({r.video_id for r in labels.rows}):
        width, height, duration_s = con.execute(
            "SELECT width, height, duration_s FROM videos WHERE video_id = ? AND config_hash = ? AND status = 'ok' LIMIT 1",
            [video_id, config.config_hash]).fetchone()
        tracks_by_video[video_id] = _tracks(con, video_id, config.config_hash, persons, int(width), int(height))
        end_of_video_s = duration_s if duration_s else math.inf
        for row in (r for r in labels.rows if r.video_id == video_id):
            track_ids = [row.track_id] if row.track_id is not None else [
                t for t, tr in tracks_by_video[video_id].items() if tr.seen_between(row.t_start_s, row.t_end_s)]
            first, last = clip_index(row.t_start_s, clip_s), clip_index(max(row.t_start_s, row.t_end_s - 1e-9), clip_s)
            for k in range(first, last + 1):
                lo, hi = clip_bounds(k, clip_s)
                span = min(hi, end_of_video_s) - lo
                coverage = (min(hi, row.t_end_s) - max(lo, row.t_start_s)) / span if span > 0 else 0.0
                for track_id in track_ids:
                    key = (video_id, track_id, k)
                    if coverage >= _MIN_COVERAGE and coverage > best.get(key, (0.0, 0, ""))[0]:
                        best[key] = (coverage, row.row, row.action)
    class_index = {c: i for i, c in enumerate(labels.classes)}
    sequences, y, groups, keys = [], [], [], []
    for key in sorted(best):
        video_id, track_id, k = key
        track = tracks_by_video[video_id].get(track_id)
        features = track.window_features(k, clip_s, config.min_track_frames) if track is not None else None
        if features is None:
            continue
        _, row, action = best[key]
        sequences.append(features)
        y.append(class_index[action])
        groups.append(row)
        keys.append(key)
    used = set(groups)
    return LabelledSequences(
        sequences, np.array(y, dtype=np.int64), labels.classes, np.array(groups, dtype=np.int64), keys, config,
        rows_without_sequences=[r.row for r in labels.rows if r.row not in used],
    )


def load_labelled_sequences(
    con: duckdb.DuckDBPyConnection, labels_path: str | os.PathLike[str], config_hash: str | None = None,
) -> tuple[Labels, LabelledSequences]:
    """Read, check and resolve a labels file against the lake, then build its sequences."""
    table = read_labels(labels_path)
    sha256 = hashlib.sha256(Path(labels_path).read_bytes()).hexdigest()
    labels = resolve_labels(table, _video_references(con), str(labels_path), sha256, Path(labels_path).parent)
    config = lake_config(con, {r.video_id for r in labels.rows}, config_hash)
    data = build_sequences(con, labels, config)
    if len(data) == 0:
        raise ConfigError(f"{labels_path}: no label covers half a clip window of a track with at least "
                          f"{config.min_track_frames} detections in it (clip_seconds {config.clip_seconds})")
    empty = [c for c, n in data.counts().items() if n == 0]
    if empty:
        rows = {c: [r.row for r in labels.rows if r.action == c] for c in empty}
        raise ConfigError(f"{labels_path}: class(es) with no usable sequence: " + "; ".join(
            f"{c!r} (rows {_rows_text(rows[c])}: no tracked person with {config.min_track_frames}+ detections "
            f"in a clip window the label covers by half)" for c in empty))
    return labels, data


@dataclass(frozen=True)
class _Track(TrackSeries):
    """All detections of one track in the lake, sorted by time."""

    def seen_between(self, t_start_s: float, t_end_s: float) -> bool:
        return bool(((self.t_s >= t_start_s) & (self.t_s < t_end_s)).any())

    def window_features(self, k: int, clip_s: float, min_frames: int) -> np.ndarray | None:
        """The features inference computes for this track in clip window ``k`` (None below ``min_frames``)."""
        windows = np.array([clip_index(t, clip_s) for t in self.t_s])
        inside = np.flatnonzero(windows == k)
        if len(inside) < max(1, min_frames):
            return None
        first = inside[0]
        carried = first > 0 and windows[first - 1] == k - 1
        take = np.r_[first - 1, inside] if carried else inside
        features = track_features(self.t_s[take], self.xyxy[take], self.confidence[take], self.fall_score[take],
                                  self.frame_width, self.frame_height)
        return features[1:] if carried else features


def _tracks(con: duckdb.DuckDBPyConnection, video_id: str, config_hash: str, persons: set[str], width: int, height: int) -> dict[int, _Track]:
    det = con.execute(
        "SELECT track_id, t_s, x1, y1, x2, y2, confidence, class_name FROM detections "
        "WHERE video_id = ? AND config_hash = ? AND track_id IS NOT NULL ORDER BY track_id, t_s, frame_index",
        [video_id, config_hash]).fetchnumpy()
    out: dict[int, _Track] = {}
    if len(det["track_id"]) == 0:
        return out
    keep = np.array([name in persons for name in det["class_name"]], dtype=bool)
    track_ids = np.asarray(det["track_id"])[keep]
    for track_id in np.unique(track_ids):
        m = np.flatnonzero(keep)[track_ids == track_id]
        conf = np.asarray(det["confidence"], dtype=np.float32)[m]
        fall = np.array([c if is_fall_class(str(n)) else 0.0 for c, n in zip(conf, np.asarray(det["class_name"])[m])], np.float32)
        xyxy = np.stack([np.asarray(det[c], dtype=np.float32)[m] for c in ("x1", "y1", "x2", "y2")], axis=1)
        out[int(track_id)] = _Track(np.asarray(det["t_s"], dtype=np.float64)[m], xyxy, conf, fall, width, height)
    return out


def _person_class_names(con: duckdb.DuckDBPyConnection, config_hash: str) -> set[str]:
    """Classes whose tracks get actions, as at inference (detector classes seen under this config)."""
    pairs = con.execute("SELECT DISTINCT class_id, class_name FROM detections WHERE config_hash = ?", [config_hash]).fetchall()
    names = {int(i): str(n) for i, n in pairs}
    return {names[i] for i in person_class_ids(names)} if names else set()


def _video_references(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    try:
        pairs = con.execute("SELECT DISTINCT video_id, uri FROM videos").fetchall()
    except duckdb.Error as exc:
        raise LakeError(f"cannot read the lake's videos: {str(exc).splitlines()[0]}") from None
    refs: dict[str, str] = {}
    for video_id, uri in pairs:
        refs[video_id] = video_id
        if uri:
            refs[uri] = video_id
    return refs


def _resolve_video(ref: str, videos: dict[str, str], base_dir: Path | None) -> str | None:
    if not ref:
        return None
    if ref in videos:
        return videos[ref]
    if "://" in ref:
        return None
    for base in (Path.cwd(), base_dir or Path.cwd()):  # a relative or unresolved local path
        candidate = str((base / ref).expanduser().resolve())
        if candidate in videos:
            return videos[candidate]
    return None


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _number(value: object) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:_MAX_LISTED]))
    return shown + (f" and {len(rows) - _MAX_LISTED} more" if len(rows) > _MAX_LISTED else "")
