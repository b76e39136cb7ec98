"""Action labels from users, and the training sequences they select from the lake.

A labels file (CSV or Parquet) has one row per labelled time range::

    video_id or uri, t_start_s, t_end_s, action[, track_id][, x, y]

``video_id`` may be a lake video id or the source's URI (``uri`` or ``video`` columns are
accepted too). Which person a row is about: ``track_id`` (the lake's track id), or a point
``x``, ``y`` (pixels) on the person at the middle of the range, which names the track whose box
holds it there (robust to other settings renumbering tracks); with neither, the label applies to
every track seen in the range.

Sequences are built exactly as inference builds them (``videolake.pipeline.clips``): per track and
clip window ``k`` (``[k * clip_seconds, (k + 1) * clip_seconds)``), the track's detections in the
window, rates carried from its last detection in window ``k - 1``, features from
``videolake.pipeline.features.window_features``, and the same evidence rule (``clips.clip_evidence``):
a (track, window) that inference would not classify (not a person, or too little evidence) is
counted as such, not trained on. A (track, window) gets the label that covers most of the window,
when that label covers at least half of it.
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

from videolake.pipeline.clips import Evidence, clip_bounds, clip_evidence, clip_index
from videolake.pipeline.errors import ConfigError, LakeError
from videolake.pipeline.features import TrackSeries, person_class_ids, window_features

__all__ = ["LabelRow", "Labels", "MissedLabel", "LabelledSequences", "read_labels", "resolve_labels", "LakeConfig", "lake_config",
           "build_sequences", "load_labelled_sequences", "labelled_windows"]

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
    point_xy: tuple[float, float] | None = None  # a point on the person at the middle of the range (pixels)


@dataclass(frozen=True)
class Labels:
    rows: tuple[LabelRow, ...]
    classes: tuple[str, ...]  # sorted: users name their own classes
    source: str
    sha256: str               # of the file's bytes

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class MissedLabel:
    """A labelled clip window that got no tracked box of its own: a run wrote no row for that person there."""

    row: int
    video_id: str
    clip_index: int
    action: str


@dataclass(frozen=True)
class LakeConfig:
    """What building sequences needs to know about one configuration of the lake."""

    config_hash: str
    clip_seconds: float
    min_track_frames: int


@dataclass
class LabelledSequences:
    """Feature sequences (t_i, N_FEATURES), their class indices and where each came from.

    ``evidence[i]`` is what inference decides for sequence ``i`` before the model runs: only
    ``ENOUGH`` sequences are classified (and trained on); ``UNKNOWN`` ones are reported unknown
    and ``NOT_A_PERSON`` ones get no action at all.
    """

    sequences: list[np.ndarray]
    y: np.ndarray                              # (n,) indices into ``classes``
    classes: tuple[str, ...]
    groups: np.ndarray                         # (n,) label row each sequence came from
    keys: list[tuple[str, int, int]]           # (video_id, track_id, clip_index)
    config: LakeConfig
    rows_without_sequences: list[int] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    # Labelled clip windows (covered by half or more) that no tracked box of their own answers: the person was
    # never tracked there, or shares a track with another labelled person. A run wrote no row for them.
    missed: list[MissedLabel] = field(default_factory=list)

    def classifiable(self) -> LabelledSequences:
        """Only the sequences inference classifies (what training uses)."""
        keep = [i for i, e in enumerate(self.evidence) if e.classified]
        return LabelledSequences([self.sequences[i] for i in keep], self.y[keep], self.classes, self.groups[keep],
                                 [self.keys[i] for i in keep], self.config, self.rows_without_sequences,
                                 [self.evidence[i] for i in keep], self.missed)

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
        point = (_number(data["x"][i]), _number(data["y"][i])) if "x" in data and "y" in data else (None, None)
        has_point = point != (None, None)
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
        if has_point and None in point:
            problems["x and y: give both or neither"].append(n)
        if video_id is not None and start is not None and end is not None and action:
            rows.append(LabelRow(n, video_id, start, end, action, int(track) if has_track and track is not None else None,
                                 point if has_point and None not in point else None))
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
        "WHERE v.status = 'ok' AND v.video_id IN (SELECT unnest(?)) GROUP BY 1 ORDER BY last DESC NULLS LAST, 1",
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
    covered: dict[tuple[int, int], MissedLabel] = {}  # (label row, clip index) -> that labelled window
    tracks_by_video: dict[str, dict[int, _Track]] = {}
    for video_id in sorted({r.video_id for r in labels.rows}):
        tracks_by_video[video_id], duration_s = _video_tracks(con, video_id, config.config_hash, persons)
        end_of_video_s = duration_s if duration_s else math.inf
        for row in (r for r in labels.rows if r.video_id == video_id):
            tracks = tracks_by_video[video_id]
            if row.track_id is not None:
                track_ids = [row.track_id]
            elif row.point_xy is not None:
                track_ids = _track_at(tracks, (row.t_start_s + row.t_end_s) / 2, row.point_xy, row.t_start_s, row.t_end_s)
            else:
                track_ids = [t for t, tr in tracks.items() if tr.seen_between(row.t_start_s, row.t_end_s)]
            first, last = clip_index(row.t_start_s, clip_s), clip_index(max(row.t_start_s, row.t_end_s - 1e-9), clip_s)
            for k in range(first, last + 1):
                lo, hi = clip_bounds(k, clip_s)
                span = min(hi, end_of_video_s) - lo
                coverage = (min(hi, row.t_end_s) - max(lo, row.t_start_s)) / span if span > 0 else 0.0
                if coverage >= _MIN_COVERAGE:
                    covered[(row.row, k)] = MissedLabel(row.row, video_id, k, row.action)
                for track_id in track_ids:
                    key = (video_id, track_id, k)
                    if coverage >= _MIN_COVERAGE and coverage > best.get(key, (0.0, 0, ""))[0]:
                        best[key] = (coverage, row.row, row.action)
    class_index = {c: i for i, c in enumerate(labels.classes)}
    sequences, y, groups, keys, evidence = [], [], [], [], []
    for key in sorted(best):
        video_id, track_id, k = key
        track = tracks_by_video[video_id].get(track_id)
        window = track.window(k, clip_s) if track is not None else None
        if window is None:
            continue
        _, row, action = best[key]
        sequences.append(window_features(window, track.last_before(k, clip_s)))
        evidence.append(clip_evidence(window, config.min_track_frames))
        y.append(class_index[action])
        groups.append(row)
        keys.append(key)
    used = set(groups)
    answered = {(row, key[2]) for row, key in zip(groups, keys)}
    return LabelledSequences(
        sequences, np.array(y, dtype=np.int64), labels.classes, np.array(groups, dtype=np.int64), keys, config,
        rows_without_sequences=[r.row for r in labels.rows if r.row not in used], evidence=evidence,
        missed=[m for key, m in sorted(covered.items()) if key not in answered],
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
        raise ConfigError(f"{labels_path}: no label covers half a clip window of a tracked person "
                          f"(clip_seconds {config.clip_seconds})")
    empty = [c for c, n in data.counts().items() if n == 0]
    if empty:
        rows = {c: [r.row for r in labels.rows if r.action == c] for c in empty}
        raise ConfigError(f"{labels_path}: class(es) with no usable sequence: " + "; ".join(
            f"{c!r} (rows {_rows_text(rows[c])}: no tracked box in a clip window the label covers by half)" for c in empty))
    return labels, data


@dataclass(frozen=True)
class _Track(TrackSeries):
    """All detections of one track in the lake, sorted by time, with the shard each came from."""

    shard_index: np.ndarray | None = None

    def seen_between(self, t_start_s: float, t_end_s: float) -> bool:
        return bool(((self.t_s >= t_start_s) & (self.t_s < t_end_s)).any())

    def _windows(self, clip_s: float) -> np.ndarray:
        return np.array([clip_index(t, clip_s) for t in self.t_s], dtype=np.int64)

    def window(self, k: int, clip_s: float) -> TrackSeries | None:
        """The track's detections in clip window ``k`` (None when it was not seen there)."""
        inside = np.flatnonzero(self._windows(clip_s) == k)
        return self.take(inside) if len(inside) else None

    def last_before(self, k: int, clip_s: float) -> TrackSeries | None:
        """Its last detection in window ``k - 1``, as inference carries it over (None when not seen there).

        Not across shards: camera poses are relative to each shard's first frame (inference carries
        from the shard's own warm-up, which the lake keeps apart)."""
        windows = self._windows(clip_s)
        before, inside = np.flatnonzero(windows == k - 1), np.flatnonzero(windows == k)
        if not len(before):
            return None
        if self.shard_index is not None and len(inside) and self.shard_index[before[-1]] != self.shard_index[inside[0]]:
            return None
        return self.take(before[-1:])


def labelled_windows(con: duckdb.DuckDBPyConnection, data: LabelledSequences) -> list[TrackSeries]:
    """The detections behind each labelled sequence (``data.keys``), read from the lake as ``build_sequences`` reads them."""
    persons = _person_class_names(con, data.config.config_hash)
    tracks: dict[str, dict[int, _Track]] = {}
    out = []
    for video_id, track_id, k in data.keys:
        if video_id not in tracks:
            tracks[video_id] = _video_tracks(con, video_id, data.config.config_hash, persons)[0]
        out.append(tracks[video_id][track_id].window(k, data.config.clip_seconds))
    return out


def _video_tracks(con: duckdb.DuckDBPyConnection, video_id: str, config_hash: str, persons: set[str]) -> tuple[dict[int, _Track], float | None]:
    """All tracks of a video and its duration."""
    width, height, duration_s = con.execute(
        "SELECT width, height, duration_s FROM videos WHERE video_id = ? AND config_hash = ? AND status = 'ok' LIMIT 1",
        [video_id, config_hash]).fetchall()[0]
    return _tracks(con, video_id, config_hash, persons, int(width), int(height)), duration_s


def _track_at(tracks: dict[int, _Track], t_s: float, point_xy: tuple[float, float], t_start_s: float, t_end_s: float) -> list[int]:
    """The track whose box, at its detection nearest to ``t_s`` inside the range, holds the point (nearest centre wins)."""
    x, y = point_xy
    best: tuple[float, int] | None = None
    for track_id, track in tracks.items():
        inside = np.flatnonzero((track.t_s >= t_start_s) & (track.t_s < t_end_s))
        if not len(inside):
            continue
        i = inside[np.argmin(np.abs(track.t_s[inside] - t_s))]
        x1, y1, x2, y2 = track.xyxy[i]
        if x1 <= x <= x2 and y1 <= y <= y2:
            distance = float(np.hypot((x1 + x2) / 2 - x, (y1 + y2) / 2 - y))
            if best is None or distance < best[0]:
                best = (distance, track_id)
    return [best[1]] if best else []


def _tracks(con: duckdb.DuckDBPyConnection, video_id: str, config_hash: str, persons: set[str], width: int, height: int) -> dict[int, _Track]:
    det = con.sql(
        "SELECT track_id, t_s, x1, y1, x2, y2, confidence, class_name, kp_x, kp_y, kp_conf, pose_confidence, "
        "shard_index, cam_scale, cam_x, cam_y FROM detections "
        "WHERE video_id = ? AND config_hash = ? AND track_id IS NOT NULL ORDER BY track_id, t_s, frame_index",
        params=[video_id, config_hash]).to_arrow_table()
    with_pose = _run_features(con, config_hash) == "pose"
    out: dict[int, _Track] = {}
    if det.num_rows == 0:
        return out
    keep = np.array([name in persons for name in det.column("class_name").to_pylist()], dtype=bool)
    track_ids = det.column("track_id").to_numpy()[keep]
    keypoints = _keypoints(det) if with_pose else None
    pose_conf = np.nan_to_num(det.column("pose_confidence").to_numpy(zero_copy_only=False).astype(np.float32)) if with_pose else None
    t_s = det.column("t_s").to_numpy()
    conf = det.column("confidence").to_numpy().astype(np.float32)
    xyxy = np.stack([det.column(c).to_numpy().astype(np.float32) for c in ("x1", "y1", "x2", "y2")], axis=1)
    camera = np.stack([det.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in ("cam_scale", "cam_x", "cam_y")],
                      axis=1)
    camera = np.where(np.isnan(camera), [1.0, 0.0, 0.0], camera)  # rows written before camera poses: a still camera
    shard = det.column("shard_index").to_numpy(zero_copy_only=False)
    for track_id in np.unique(track_ids):
        m = np.flatnonzero(keep)[track_ids == track_id]
        out[int(track_id)] = _Track(t_s[m], xyxy[m], conf[m], None if keypoints is None else keypoints[m],
                                    None if pose_conf is None else pose_conf[m], width, height, camera[m], shard[m])
    return out


def _keypoints(det: pa.Table) -> np.ndarray:
    """(n, 17, 3) keypoints from the lake's list columns; zeros where a detection has no skeleton."""
    out = np.zeros((det.num_rows, 17, 3), np.float32)
    for j, name in enumerate(("kp_x", "kp_y", "kp_conf")):
        for i, values in enumerate(det.column(name).to_pylist()):
            if values is not None:
                out[i, :, j] = values
    return out


def _run_features(con: duckdb.DuckDBPyConnection, config_hash: str) -> str:
    """``pose`` or ``box``: what the runs of this configuration gave the action model."""
    found = con.execute("SELECT features FROM runs WHERE config_hash = ? AND features IS NOT NULL "
                        "ORDER BY finished_at DESC LIMIT 1", [config_hash]).fetchall()
    if found:
        return str(found[0][0])
    has_keypoints = con.execute("SELECT count(kp_x) FROM detections WHERE config_hash = ?", [config_hash]).fetchall()[0][0]
    return "pose" if has_keypoints else "box"


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
