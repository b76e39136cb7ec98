"""A static HTML report of a lake: runs, failures, and per video an action timeline, action
counts per time bucket and a few annotated keyframes.

Everything is local: images sit beside ``index.html`` under ``img/`` and are referenced by
relative paths; the page has no scripts and no network URLs. Figures come from
``videolake.pipeline.plots`` (matplotlib), keyframes from ``videolake.pipeline.render`` (the source video,
decoded around each keyframe only).
"""

from __future__ import annotations

import html
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np

from videolake.pipeline.decode import iter_frames
from videolake.pipeline.errors import StorageError, VideolakeError
from videolake.pipeline.plots import ClipSpan, action_colors, bucket_counts_png, timeline_png
from videolake.pipeline.query import format_cell
from videolake.pipeline.render import VideoRecord, annotate, load_overlay

__all__ = ["ReportResult", "write_report", "choose_bucket_s"]

_NICE_BUCKETS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
_MAX_BUCKETS = 40


@dataclass
class ReportResult:
    index: Path
    videos: int
    images: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be drawn, and why


def choose_bucket_s(duration_s: float, clip_seconds: float) -> float:
    """The smallest round bucket, at least a clip long, that gives at most ``_MAX_BUCKETS`` buckets."""
    for b in _NICE_BUCKETS_S:
        if b >= clip_seconds and duration_s / b <= _MAX_BUCKETS:
            return float(b)
    return float(math.ceil(duration_s / _MAX_BUCKETS / 3600) * 3600)


def write_report(
    con: duckdb.DuckDBPyConnection,
    out_dir: str | os.PathLike[str],
    keyframes_per_video: int = 3,
    bucket_s: float | None = None,
    title: str = "videolake report",
) -> ReportResult:
    """Write ``out_dir/index.html`` and its images; returns what was written."""
    out = Path(out_dir)
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    result = ReportResult(out / "index.html", 0)
    colors = action_colors([r[0] for r in con.execute("SELECT DISTINCT action FROM clips").fetchall()])
    sections = [_runs_section(con), _failures_section(con)]
    videos = _ok_videos(con)
    for video in videos:
        sections.append(_video_section(con, video, img, keyframes_per_video, bucket_s, colors, result))
    result.videos = len(videos)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes = "".join(f"<li>{_e(n)}</li>" for n in result.notes)
    body = "\n".join(sections) + (f"<section><h2>Notes</h2><ul>{notes}</ul></section>" if notes else "")
    result.index.write_text(_PAGE.format(title=_e(title), generated=generated, n=len(videos), body=body), encoding="utf-8")
    return result


def _runs_section(con: duckdb.DuckDBPyConnection) -> str:
    rows = con.execute(
        "SELECT run_id, started_at, finished_at, config_hash, detector, action_model, videos_ok, videos_failed, "
        "frames_analyzed, round(wall_s, 1) AS wall_s FROM runs ORDER BY started_at DESC").fetchall()
    headers = ["run", "started", "finished", "config", "detector", "actions", "ok", "failed", "frames", "wall s"]
    return f"<section><h2>Runs ({len(rows)})</h2>{_table(headers, rows)}</section>"


def _failures_section(con: duckdb.DuckDBPyConnection) -> str:
    rows = con.execute(
        "SELECT video_id, uri, error, run_id, config_hash FROM videos WHERE status <> 'ok' ORDER BY video_id").fetchall()
    warned = con.execute(
        "SELECT video_id, uri, warning, run_id, config_hash FROM videos WHERE status = 'ok' AND warning IS NOT NULL "
        "ORDER BY video_id").fetchall()
    parts = [f"<section><h2>Failures ({len(rows)})</h2>"]
    parts.append(_table(["video", "source", "reason", "run", "config"], rows) if rows else "<p>No video failed.</p>")
    if warned:
        parts.append(f"<h3>Analysed with warnings ({len(warned)})</h3>")
        parts.append(_table(["video", "source", "warning", "run", "config"], warned))
    parts.append("</section>")
    return "".join(parts)


def _ok_videos(con: duckdb.DuckDBPyConnection) -> list[VideoRecord]:
    rows = con.execute(
        "SELECT v.video_id, v.config_hash, v.uri, v.status, v.width, v.height, v.fps, v.duration_s "
        "FROM videos v LEFT JOIN runs r USING (run_id) WHERE v.status = 'ok' "
        "ORDER BY v.video_id, r.finished_at DESC NULLS LAST, v.config_hash").fetchall()
    return [VideoRecord(*r) for r in rows]


def _video_section(
    con: duckdb.DuckDBPyConnection, video: VideoRecord, img: Path, n_keyframes: int, bucket_s: float | None,
    colors: dict[str, str], result: ReportResult,
) -> str:
    key = [video.video_id, video.config_hash]
    stem = _safe(f"{video.video_id}-{video.config_hash}")
    duration_s = float(video.duration_s or 0.0)
    clips = con.execute(
        "SELECT coalesce(track_id, -1), t_start_s, t_end_s, action FROM clips WHERE video_id = ? AND config_hash = ? "
        "ORDER BY track_id, t_start_s", key).fetchall()
    clip_s = (clips[0][2] - clips[0][1]) if clips else 2.0
    spans = [ClipSpan(int(t), float(a), float(b), str(act)) for t, a, b, act in clips]
    timeline = timeline_png(spans, img / f"{stem}-timeline.png", f"{video.video_id}: actions per track",
                            duration_s or None, colors)
    bucket = bucket_s or choose_bucket_s(max(duration_s, clip_s), clip_s)
    counts = con.execute(
        "SELECT bucket_start_s, action, n_clips FROM actions_per_bucket(?) WHERE video_id = ? AND config_hash = ?",
        [bucket, *key]).fetchall()
    buckets = bucket_counts_png([c[0] for c in counts], [c[1] for c in counts], [c[2] for c in counts], bucket,
                                img / f"{stem}-buckets.png", f"{video.video_id}: clips per action every {bucket:g} s", colors)
    result.images += [timeline, buckets]
    totals = con.execute(
        "SELECT action, count(*) AS clips, count(DISTINCT track_id) AS tracks FROM clips "
        "WHERE video_id = ? AND config_hash = ? GROUP BY 1 ORDER BY 2 DESC, 1", key).fetchall()
    n_tracks, n_det = con.execute(
        "SELECT count(DISTINCT track_id), count(*) FROM detections WHERE video_id = ? AND config_hash = ?", key).fetchone()
    keyframes = _keyframes(con, video, img, stem, n_keyframes, result)
    figures = "".join(f'<figure><img src="img/{_e(p.name)}" alt="keyframe at {t:.2f} s"><figcaption>{t:.2f} s, '
                      f'{n} detection(s)</figcaption></figure>' for p, t, n in keyframes)
    return (
        f'<section class="video"><h2 id="{_e(stem)}">{_e(video.video_id)}</h2>'
        f"<p class=\"meta\">{_e(video.uri)} · {video.width}x{video.height} · {duration_s:.1f} s · "
        f"config {_e(video.config_hash)} · {n_det} detections · {n_tracks} tracks</p>"
        f'<h3>Action timeline</h3><img src="img/{_e(timeline.name)}" alt="action timeline of {_e(video.video_id)}">'
        f'<h3>Actions per {bucket:g} s</h3><img src="img/{_e(buckets.name)}" alt="actions per time bucket">'
        f"{_table(['action', 'clips', 'tracks'], totals)}"
        f'<h3>Keyframes</h3><div class="keyframes">{figures or "<p>No keyframe (no detections or source not readable).</p>"}</div>'
        "</section>"
    )


def _keyframes(
    con: duckdb.DuckDBPyConnection, video: VideoRecord, img: Path, stem: str, n: int, result: ReportResult,
) -> list[tuple[Path, float, int]]:
    """Up to ``n`` analysed frames, one per equal stretch of time, each the one with most detections."""
    if n <= 0:
        return []
    per_frame = con.execute(
        "SELECT t_s, count(*) AS n FROM detections WHERE video_id = ? AND config_hash = ? GROUP BY t_s ORDER BY t_s",
        [video.video_id, video.config_hash]).fetchall()
    if not per_frame:
        return []
    times = np.array([r[0] for r in per_frame])
    counts = np.array([r[1] for r in per_frame])
    chosen = []
    for part in np.array_split(np.arange(len(times)), min(n, len(times))):
        chosen.append(float(times[part[np.argmax(counts[part])]]))
    import cv2

    out = []
    overlay = load_overlay(con, video, max(0.0, chosen[0] - 1.0), chosen[-1] + 1.0)
    for t_s in chosen:
        try:
            frame = next(iter_frames(video.uri, start_s=t_s, end_s=t_s + 0.5 / (video.fps or 25.0)), None)
        except VideolakeError as exc:  # the source moved, broke or its bucket failed: the rest of the report stands
            result.notes.append(f"{video.video_id}: keyframes skipped, the source cannot be read: {exc}")
            break
        if frame is None:
            continue
        image, boxes = annotate(frame.image, overlay, frame.t_s)
        scale = min(1.0, 640 / image.shape[1])
        if scale < 1.0:
            image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        path = img / f"{stem}-key-{t_s:09.3f}.jpg"
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 85]):
            raise StorageError(f"cannot write {path}")  # the report's own folder: not a note, an error
        out.append((path, frame.t_s, boxes))
        result.images.append(path)
    return out


def _table(headers: list[str], rows: list[tuple]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(format_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
section {{ margin-bottom: 2.5em; }}
section.video {{ border-top: 2px solid #ddd; padding-top: 0.5em; }}
.meta {{ color: #666; font-size: 0.85em; }}
img {{ max-width: 100%; }}
.keyframes {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0; }}
figcaption {{ font-size: 0.8em; color: #666; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="meta">Generated {generated} · {n} analysed video(s)</p>
{body}
</body>
</html>
"""
