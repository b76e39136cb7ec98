"""``videolake render``, ``report`` and ``eval-actions``: results people can look at and check.

Registered on the app of ``videolake._app`` by importing this module (``videolake.cli`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from videolake._app import app, guard


@app.command()
def render(
    lake: str = typer.Argument(..., help="The lake folder."),
    video: str = typer.Option(..., "--video", help="The video_id to render (see: videolake query LAKE \"FROM videos\")."),
    out: Path = typer.Option(..., "--out", "-o", help="The .mp4 to write."),
    start: float = typer.Option(0.0, "--start", help="Start time in seconds."),
    end: Optional[float] = typer.Option(None, "--end", help="End time in seconds [default: the video's end]."),
    config_hash: Optional[str] = typer.Option(None, "--config-hash", help="Which results [default: the latest run's]."),
) -> None:
    """Re-render an annotated clip from the source video and the lake: boxes, track ids, classes, actions."""

    def go() -> None:
        from videolake.pipeline.render import lake_connection, render_clip

        con = lake_connection(lake)
        try:
            r = render_clip(con, video, out, start, end, config_hash)
        finally:
            con.close()
        typer.echo(f"wrote {r.path}: {r.frames_written} frames {r.width}x{r.height} at {r.fps:.3g} fps, "
                   f"{r.t_start_s:.2f}-{r.t_end_s:.2f} s, {r.boxes_drawn} boxes drawn (config {r.config_hash})")

    guard(go)


@app.command()
def report(
    lake: str = typer.Argument(..., help="The lake folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for index.html and its images."),
    keyframes: int = typer.Option(3, "--keyframes", help="Annotated keyframes per video (0 = none)."),
    bucket_s: Optional[float] = typer.Option(None, "--bucket-s", help="Time bucket for action counts [default: by length]."),
) -> None:
    """Write a static HTML report: runs, failures, action timelines, counts per time bucket, keyframes."""

    def go() -> None:
        from videolake.pipeline.errors import ConfigError
        from videolake.pipeline.render import lake_connection
        from videolake.pipeline.report import write_report

        if keyframes < 0 or (bucket_s is not None and bucket_s <= 0):
            raise ConfigError("--keyframes must be >= 0 and --bucket-s > 0")
        con = lake_connection(lake)
        try:
            r = write_report(con, out, keyframes, bucket_s)
        finally:
            con.close()
        for note in r.notes:
            typer.echo(f"note: {note}", err=True)
        typer.echo(f"wrote {r.index}: {r.videos} video(s), {len(r.images)} image(s)")

    guard(go)


@app.command("eval-actions")
def eval_actions(
    labels: Path = typer.Argument(..., help="Labels CSV or Parquet: video_id or uri, t_start_s, t_end_s, action[, track_id | x, y]."),
    lake: str = typer.Option(..., "--lake", help="The lake whose detections the labels refer to."),
    actions: Optional[Path] = typer.Option(None, "--actions", help="The action model (.safetensors) [default: the embedded one]."),
    config_hash: Optional[str] = typer.Option(None, "--config-hash", help="Which results [default: the latest run's]."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON here."),
) -> None:
    """Score an action model on labelled clips as a run would answer: per-class precision and recall,
    unknown rate, majority baseline, confusion matrix, and what boxes labelled `none` (no person) got."""

    def go() -> None:
        import json

        from videolake.pipeline.actions import ActionModel
        from videolake.pipeline.evaluation import score_labelled
        from videolake.pipeline.labels import load_labelled_sequences
        from videolake.pipeline.models import resolve_actions
        from videolake.pipeline.render import lake_connection

        model = ActionModel.load(resolve_actions(str(actions) if actions else "default").path)
        con = lake_connection(lake)
        try:
            _, data = load_labelled_sequences(con, labels, config_hash)
        finally:
            con.close()
        report = score_labelled(model, data)
        typer.echo(report.table())
        if data.missed:
            rows = sorted({m.row for m in data.missed})
            typer.echo(f"note: {len(data.missed)} labelled clip(s) had no tracked box of their own, scored as no row "
                       f"(rows {', '.join(map(str, rows[:8]))}{', ...' if len(rows) > 8 else ''})", err=True)
        short = sorted(set(data.rows_without_sequences) - {m.row for m in data.missed})
        if short:
            typer.echo(f"note: {len(short)} label row(s) cover no clip window by half, not scored "
                       f"(rows {', '.join(map(str, short[:8]))}{', ...' if len(short) > 8 else ''})", err=True)
        typer.echo(f"{len(data) + len(data.missed)} labelled clips (config {data.config.config_hash}); accuracy {report.accuracy_all:.3f}, "
                   f"unknown {report.unknown_rate:.1%}")
        if json_out is not None:
            json_out.write_text(json.dumps({**report.as_dict(), "config_hash": data.config.config_hash}, indent=2) + "\n")

    guard(go)
