"""Compaction and retention, through Delta.

``compact`` does, table by table: ``optimize`` (many small files of one partition become few
large ones, in one transaction that readers see whole), ``vacuum`` (files that no table
version younger than the retention period reads are deleted) and a checkpoint (readers
replay at most ``delta.checkpointInterval`` JSON commits), then removes leftover staged
files of videos already published. A compaction that races a run's commit retries on the
new version (``Lake.transact``); query results never change.
"""

from __future__ import annotations

from dataclasses import dataclass

from videolake.pipeline import storage
from videolake.pipeline.lake import PUBLISHED, STAGED, Lake

__all__ = ["CompactionReport", "compact", "small_file_count", "DEFAULT_RETENTION_HOURS"]

DEFAULT_RETENTION_HOURS = 168.0  # Delta's own default (delta.deletedFileRetentionDuration)
_SMALL_BYTES = 8 << 20
_TARGET_BYTES = 256 << 20


@dataclass
class CompactionReport:
    files_before: int = 0
    files_after: int = 0
    files_vacuumed: int = 0
    staging_removed: int = 0
    retention_hours: float = DEFAULT_RETENTION_HOURS

    def line(self) -> str:
        return (f"compacted {self.files_before} data files into {self.files_after}; vacuumed {self.files_vacuumed} "
                f"file(s) unread for {self.retention_hours:g} h; removed the staged files of {self.staging_removed} "
                f"published video(s)")


def _files(lake: Lake, name: str) -> list[int]:
    """Sizes of the table's data files at its current version."""
    adds = lake.table(name).get_add_actions(flatten=True)
    return [int(s) for s in adds.column("size_bytes").to_pylist()] if adds.num_rows else []


def small_file_count(lake: Lake, small_bytes: int = _SMALL_BYTES) -> int:
    """Data files under ``small_bytes`` in ``detections`` and ``clips``: what a compaction would merge."""
    return sum(1 for name in ("detections", "clips") for size in _files(lake, name) if size < small_bytes)


def compact(lake: Lake, retention_hours: float = DEFAULT_RETENTION_HOURS) -> CompactionReport:
    """Optimize, vacuum and checkpoint every table; completes interrupted commits first."""
    from deltalake import WriterProperties

    lake.recover()
    report = CompactionReport(retention_hours=retention_hours)
    props = WriterProperties(compression="ZSTD", max_row_group_size=128 * 1024)
    for name in PUBLISHED:
        report.files_before += len(_files(lake, name))
        lake.transact(name, "a compaction", lambda dt: dt.optimize.compact(target_size=_TARGET_BYTES, writer_properties=props))
        report.files_after += len(_files(lake, name))
        dt = lake.table(name)
        report.files_vacuumed += len(lake.transact(name, "a vacuum", lambda dt: dt.vacuum(
            retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=False)))
        lake.transact(name, "a checkpoint", lambda dt: dt.create_checkpoint())
        dt.cleanup_metadata()
    report.staging_removed = _remove_published_staging(lake)
    return report


def _remove_published_staging(lake: Lake) -> int:
    """Staged files of videos whose ``ok`` row is published (a commit's clean-up that was cut short)."""
    published = {(r["config_hash"], r["video_id"]) for r in lake.read(
        "videos", columns=["config_hash", "video_id", "status"]).to_pylist() if r["status"] == "ok"}
    videos: set[tuple[str, str]] = set()
    for table in STAGED:  # the ledger last, as a commit does
        gone = []
        for f in storage.list_files(lake.staging_url(table)):
            parts = f.url.rsplit("/", 3)
            if len(parts) == 4 and parts[1].startswith("config_hash=") and not parts[3].startswith("_tmp-"):
                key = (parts[1].split("=", 1)[1], parts[2])
                if key in published:
                    videos.add(key)
                    gone.append(f.url)
        storage.remove_files(gone)  # file by file: a worker of a run may be writing beside them
    return len(videos)
