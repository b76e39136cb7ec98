"""``videolake``: run, serve, query, compact, migrate, samples, models, train-actions (render, report, eval-actions)."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import List, Optional

import typer

from videolake._app import app, guard
from videolake.pipeline.errors import ConfigError, ModelError

__all__ = ["app", "entry"]


def entry(prog_name: str = "videolake") -> None:
    """The console script: ``app``, then an exit that skips native libraries' teardown.

    Python's exit handlers run (Ray's shutdown, a temporary Prefect server's stop, log
    flushing); what is skipped is the C++ static destruction after them, where pyarrow's and
    delta-rs' thread pools can abort a process that already finished its work (``terminate
    called without an active exception``, exit 134, about one compaction in a hundred here;
    apache/arrow#34314, delta-io/delta-rs#2184).
    """
    import atexit

    code: int | str | None = 0
    try:
        app(prog_name=prog_name)
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except BaseException:  # noqa: BLE001 - printed as Python would, then the same exit
        traceback.print_exc()
        code = 1
    finally:
        atexit._run_exitfuncs()
        logging.shutdown()
        if isinstance(code, str):
            print(code, file=sys.stderr)
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)


_STORAGE_HELP = ("JSON options for the bucket's filesystem (fsspec/s3fs), e.g. credentials or "
                 '\'{"client_kwargs": {"endpoint_url": "http://minio:9000"}}\' [default: the standard credential chains].')


def _use_storage_options(options: Optional[str]) -> None:
    """Options reach this process's filesystems (and, through the environment, its children), never a log."""
    if options is not None:
        from videolake.pipeline.storage import set_storage_options

        set_storage_options(options)


@app.command()
def run(
    sources: List[str] = typer.Argument(..., help="Video files, folders, bucket prefixes (s3://, gs://, az://) or globs."),
    out: str = typer.Option(..., "--out", "-o", help="The lake: a folder or a bucket URL."),
    detector: Optional[str] = typer.Option(None, help="Detector weights path or Ultralytics name [default: embedded person detector]."),
    actions: Optional[str] = typer.Option(None, help="Action LSTM weights (.safetensors) [default: embedded model]."),
    pose: Optional[str] = typer.Option(None, help="Top-down pose model: Ultralytics pose weights, or none for box-only actions "
                                                 "[default: embedded yolo11n-pose]."),
    pose_imgsz: Optional[int] = typer.Option(None, "--pose-imgsz", help="Pose model input: each person crop is scaled to this square [default: 192]."),
    analysis_fps: Optional[float] = typer.Option(None, "--analysis-fps", help="Frames per second analysed; 0 = every frame [default: 8]."),
    imgsz: Optional[int] = typer.Option(None, help="Detector input size [default: 640]."),
    clip_seconds: Optional[float] = typer.Option(None, "--clip-seconds", help="Action clip length [default: 2.0]."),
    conf: Optional[float] = typer.Option(None, help="Detection confidence threshold [default: 0.25]."),
    tracker: Optional[str] = typer.Option(None, help="bytetrack or botsort [default: bytetrack]."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N [default: auto]."),
    workers: Optional[int] = typer.Option(None, help="Ray actors [default: what the cores or GPUs support]."),
    max_workers: Optional[int] = typer.Option(None, "--max-workers", help="Autoscaling: ask the cluster for up to this many actors as the backlog needs "
                                                     "[default: what it holds now]."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster [default: RAY_ADDRESS or a local Ray]."),
    batch: Optional[int] = typer.Option(None, help="Frames per detector forward pass [default: 8 on CPU, 32 on CUDA]."),
    runtime: Optional[str] = typer.Option(None, help="Detector runtime: auto (ONNX Runtime on CPU, PyTorch on CUDA), torch or onnx [default: auto]."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", help="GPU share per actor, e.g. 0.5 [default: 1]."),
    decoders: Optional[int] = typer.Option(None, help="Shards one actor runs at once, each decoding in its own thread [default: 4 on CUDA, 1 on CPU]."),
    motion_gate: Optional[str] = typer.Option(None, "--motion-gate", help="Run the detector only where the scene moved: auto (on while "
                                                "the camera keeps still), on or off; the rest is carried [default: auto]."),
    shard_seconds: Optional[float] = typer.Option(None, "--shard-seconds", help="Cut videos into shards of about this length; 0 = whole video [default: 60]."),
    camera_pattern: Optional[str] = typer.Option(None, "--camera-pattern", help="Regular expression on each video's path whose group 'camera' "
                                                          "(or first group) is its camera_id [default: the parent folder's name]."),
    time_pattern: Optional[str] = typer.Option(None, "--time-pattern", help="strptime format of a start time in file names, for recorded_at "
                                                        "when the container has no creation_time [default: %Y%m%d_%H%M%S]."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Analyse quarantined videos (failed before on the same content) again."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with the same keys as these options."),
    storage_options: Optional[str] = typer.Option(None, "--storage-options", help=_STORAGE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Analyse videos into the lake and print a summary."""

    def go() -> None:
        from videolake.api import analyze

        _use_storage_options(storage_options)
        _quiet_logs(verbose)
        summary = analyze(sources, out, config=config, retry_failed=retry_failed, show_progress=not quiet,
                          detector=detector, actions=actions, analysis_fps=analysis_fps, imgsz=imgsz,
                          clip_seconds=clip_seconds, conf=conf, tracker=tracker, device=device, workers=workers,
                          max_workers=max_workers, ray_address=ray_address, batch=batch, gpus_per_worker=gpus_per_worker,
                          decoders=decoders, shard_seconds=shard_seconds, runtime=runtime, pose=pose, pose_imgsz=pose_imgsz,
                          motion_gate=motion_gate,
                          camera_pattern=camera_pattern, time_pattern=time_pattern)
        typer.echo("\n".join(summary.lines()))

    guard(go)


@app.command()
def serve(
    sources: List[str] = typer.Argument(..., help="Video folders, bucket prefixes or globs to watch."),
    out: str = typer.Option(..., "--out", "-o", help="The lake: a folder or a bucket URL."),
    cron: Optional[str] = typer.Option(None, "--cron", help='Cron schedule, e.g. "*/15 * * * *" (UTC unless --timezone).'),
    interval: Optional[float] = typer.Option(None, "--interval", help="Or: run every this many seconds."),
    timezone: str = typer.Option("UTC", "--timezone", help="Time zone of the cron schedule."),
    name: str = typer.Option("videolake-analyze", "--name", help="Deployment name."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with run settings (the keys of `videolake run`'s options)."),
    storage_options: Optional[str] = typer.Option(None, "--storage-options", help=_STORAGE_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
) -> None:
    """Serve a Prefect deployment that analyses what is new under SOURCES on a schedule."""

    def go() -> None:
        from videolake.pipeline.config import RunConfig, load_config_file

        _use_storage_options(storage_options)
        if (cron is None) == (interval is None):
            raise ConfigError("give exactly one of --cron and --interval")
        from videolake.flows.deploy import make_schedule

        make_schedule(cron, interval, timezone)  # a bad schedule fails now, with exit code 2
        cfg = load_config_file(config) if config else RunConfig()
        from videolake.pipeline.plan import plan_run

        plan_run(sources, out, cfg, list_sources=False)  # fail now, not at the first scheduled run
        _quiet_logs(verbose)
        from videolake.flows.deploy import serve_deployment

        serve_deployment(list(sources), out, cfg, name=name, cron=cron, interval_s=interval, timezone=timezone)

    guard(go)


@app.command()
def query(
    lake: str = typer.Argument(..., help="The lake: a folder or a bucket URL."),
    sql: Optional[str] = typer.Argument(None, help="SQL over the views; omit to list the views."),
    format: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
    storage_options: Optional[str] = typer.Option(None, "--storage-options", help=_STORAGE_HELP),
) -> None:
    """SQL over the lake (DuckDB). Views: detections, clips, videos, runs, tracks."""

    def go() -> None:
        from videolake.pipeline import query as q

        _use_storage_options(storage_options)
        if format not in ("table", "csv", "json"):
            raise ConfigError(f"--format must be table, csv or json, got {format!r}")
        if sql is None:
            for view in q.describe_views(lake):
                cols = ", ".join(f"{n} {t}" for n, t in view.columns)
                typer.echo(f"{view.name} ({view.rows} rows): {cols}")
            return
        _print_table(q.run_sql(lake, sql), format)

    guard(go)


@app.command()
def samples(directory: Path = typer.Argument(Path("samples"), help="Where to write the videos.")) -> None:
    """Write the bundled real sample videos to DIRECTORY."""

    def go() -> None:
        from videolake.pipeline.samples import write_samples

        for path in write_samples(directory):
            typer.echo(str(path))

    guard(go)


@app.command()
def compact(
    lake: str = typer.Argument(..., help="The lake: a folder or a bucket URL."),
    retention_hours: float = typer.Option(168.0, "--retention-hours",
                                          help="Delete files that no table version of the last this many hours reads (Delta's default)."),
    storage_options: Optional[str] = typer.Option(None, "--storage-options", help=_STORAGE_HELP),
) -> None:
    """Merge the tables' small files (Delta optimize), delete unread old files (vacuum), checkpoint the logs."""

    def go() -> None:
        from videolake.pipeline.compact import compact as run_compaction
        from videolake.pipeline.lake import Lake

        _use_storage_options(storage_options)
        if retention_hours < 0:
            raise ConfigError(f"--retention-hours must be >= 0, got {retention_hours}")
        typer.echo(run_compaction(Lake.open(lake), retention_hours).line())

    guard(go)


@app.command()
def migrate(
    lake: str = typer.Argument(..., help="The lake: a folder or a bucket URL."),
    storage_options: Optional[str] = typer.Option(None, "--storage-options", help=_STORAGE_HELP),
) -> None:
    """Upgrade a lake written by an older videolake to Delta tables; nothing is lost (`run` does it too)."""

    def go() -> None:
        from videolake.pipeline.lake import LAYOUT_VERSION, Lake
        from videolake.pipeline.migrate import migrate as run_migration

        _use_storage_options(storage_options)
        opened = Lake(lake)
        layout = opened.layout()
        if layout == LAYOUT_VERSION:
            typer.echo(f"{opened.url} is up to date (layout {LAYOUT_VERSION})")
            return
        if layout != 1:
            Lake.open(lake)  # the one-line "not a lake" error
        typer.echo(f"upgraded {opened.url} to layout {LAYOUT_VERSION}: {run_migration(opened).line()}")

    guard(go)


@app.command()
def models() -> None:
    """The default models: where each comes from, classes, sha256, size."""

    def go() -> None:
        from videolake.pipeline.models import action_classes, resolve_actions, resolve_detector, resolve_pose

        detector, actions, pose = resolve_detector("default"), resolve_actions("default"), resolve_pose("default")
        typer.echo(f"detector: {detector.path}\n  source: {detector.source}\n  sha256: {detector.sha256}\n"
                   f"  size: {detector.size_bytes / 1e6:.1f} MB\n  classes: {', '.join(_detector_classes(detector.path))}")
        typer.echo(f"pose: {pose.path}\n  source: {pose.source}\n  sha256: {pose.sha256}\n"
                   f"  size: {pose.size_bytes / 1e6:.1f} MB\n  keypoints: 17 (COCO)")
        typer.echo(f"actions: {actions.path}\n  source: {actions.source}\n  sha256: {actions.sha256}\n"
                   f"  size: {actions.size_bytes / 1e3:.1f} kB\n  classes: {', '.join(action_classes(actions.path))}")

    guard(go)


@app.command("train-actions")
def train_actions(
    labels: Optional[Path] = typer.Argument(None, help="Labels CSV or Parquet: video_id or uri, t_start_s, t_end_s, action[, track_id]."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the .safetensors weights (a model card .md/.json goes beside)."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Train on generated kinematic sequences of the five default actions."),
    lake: Optional[str] = typer.Option(None, "--lake", help="The lake whose detections the labels refer to."),
    config_hash: Optional[str] = typer.Option(None, "--config-hash", help="Which results of the lake [default: the latest run's]."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of label rows held out for validation."),
    n_train: int = typer.Option(20000, help="Synthetic training sequences."),
    epochs: int = typer.Option(20, help="Maximum epochs (early stopping on the validation split)."),
    seed: int = typer.Option(0, help="Random seed (training is reproducible for a seed)."),
    members: int = typer.Option(3, help="LSTMs trained from consecutive seeds; the model answers with their mean probability."),
) -> None:
    """Train the action LSTM (on your labels, or --synthetic) and write weights plus a model card."""

    def go() -> None:
        if members < 1:
            raise ConfigError(f"--members must be >= 1, got {members}")
        if synthetic:
            if labels is not None or lake is not None:
                raise ConfigError("--synthetic takes no LABELS and no --lake")
            from videolake.pipeline.train import train_synthetic

            card = train_synthetic(out, n_train=n_train, epochs=epochs, seed=seed, members=members, log=typer.echo)
            typer.echo(f"held-out accuracy {card['test_accuracy']:.3f}; wrote {out}")
            return
        if labels is None or lake is None:
            raise ConfigError("give LABELS and --lake LAKE (or --synthetic)")
        if not 0 < val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {val_fraction}")
        if epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {epochs}")
        from videolake.pipeline.labels import load_labelled_sequences
        from videolake.pipeline.render import lake_connection
        from videolake.pipeline.train import TrainConfig, train_on_labels

        con = lake_connection(lake)
        try:
            found, everything = load_labelled_sequences(con, labels, config_hash)
        finally:
            con.close()
        data = everything.classifiable()  # what inference would classify: enough frames and skeletons, a person
        if len(data) < len(everything):
            typer.echo(f"note: {len(everything) - len(data)} labelled clip(s) left out: inference would call them unknown "
                       "or not a person (too few detections or skeletons)", err=True)
        if data.rows_without_sequences:
            typer.echo(f"note: {len(data.rows_without_sequences)} label row(s) gave no clip to train on "
                       f"(e.g. rows {', '.join(map(str, data.rows_without_sequences[:8]))})", err=True)
        provenance = {"labels": str(labels), "labels_sha256": found.sha256, "lake": str(lake),
                      "config_hash": data.config.config_hash, "clip_seconds": data.config.clip_seconds}
        card = train_on_labels(data.sequences, data.y, data.groups, data.classes, out, TrainConfig(epochs=epochs, seed=seed, members=members),
                               val_fraction, provenance, log=typer.echo)
        typer.echo(f"validation accuracy {card['val_accuracy']:.3f} (majority baseline "
                   f"{card['majority_baseline']['val_accuracy']:.3f}); classes {', '.join(card['classes'])}; wrote {out}")

    guard(go)


def _detector_classes(path: str) -> list[str]:
    from videolake.pipeline.models import check_safe_ultralytics

    check_safe_ultralytics()
    from ultralytics import YOLO

    try:
        return [str(v) for v in YOLO(path).names.values()]
    except Exception as exc:  # noqa: BLE001 - Ultralytics raises many types for bad weights
        raise ModelError(f"cannot load detector {path}: {exc}") from None


def _quiet_logs(verbose: bool) -> None:
    """Keep the terminal for the progress bar and the summary unless --verbose; the flow's logs still
    reach the Prefect API (its UI shows them under the flow run)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if verbose:
        return
    # Prefect's own chatter stays under WARNING; the flow run's records go at INFO to the API handler
    # only (Prefect configures that logger without ``propagate``, so this setting survives its set-up).
    # Failures are reported once, by the summary or the one-line error; not again as tracebacks.
    for name, level in (("PREFECT_LOGGING_LEVEL", "WARNING"),
                        ("PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL", "INFO"),
                        ("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "INFO")):
        os.environ.setdefault(name, level)
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).propagate = False
    logging.getLogger("prefect").setLevel(logging.WARNING)


def _print_table(table, fmt: str) -> None:  # noqa: ANN001 - a pyarrow.Table
    rows = table.to_pylist()
    if fmt == "json":
        typer.echo(json.dumps(rows, default=_json_default))
    elif fmt == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=table.column_names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        from rich.console import Console

        from videolake.pipeline.query import format_cell
        from rich.table import Table

        out = Table(*table.column_names)
        for row in rows:
            out.add_row(*(format_cell(v) for v in row.values()))
        Console(width=200).print(out)


def _json_default(value: object) -> object:
    from decimal import Decimal

    if isinstance(value, Decimal):  # DuckDB's sum() of integers is a HUGEINT
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


import videolake.commands_see  # noqa: E402,F401  (registers render, report, eval-actions after the commands above)

if __name__ == "__main__":
    app()
