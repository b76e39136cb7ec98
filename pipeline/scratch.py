"""What a run leaves on this machine while it runs, in one private folder, and sweeping what dead runs left.

    $TMPDIR/videolake-<uid>/                 0700; refused when another user owns it or others may write it
        ray/session_<time>_<pid>/            a run's own local Ray (its logs, sockets, spilled objects)
        prefect-server-<pid>-<id>.log        the log of a run's temporary Prefect server
        _tmp-<host>-<pid>-<id>-<name>.inprogress   a file being built for a bucket lake

A local lake holds its own ``_tmp-<host>-<pid>-...inprogress`` files beside their targets (the
final rename is atomic there). Every entry names the process that made it: a run cleans up after
itself, and ``sweep_leftovers`` removes on the next start what a killed run (``kill -9``, a lost
node) left: entries of this host whose process is gone, and unattributable ones over a day old.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

from videolake.pipeline.errors import ConfigError

__all__ = ["scratch_dir", "ray_temp_dir", "process_tag", "pid_alive", "sweep_leftovers", "remove_ray_sessions_of",
           "end_processes_using"]

STALE_AFTER_S = 24 * 3600.0  # leftovers that name no process of this host are removed after a day
_RAY_SESSION = re.compile(r"^session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_(?P<pid>\d+)$")
_SERVER_LOG = re.compile(r"^prefect-server-(?P<pid>\d+)-[0-9a-f]+\.log$")
_TMP_FILE = re.compile(r"^_tmp-.+\.inprogress$")


def scratch_dir() -> Path:
    """This user's private scratch folder, created 0700 (``ConfigError`` if it is not private)."""
    path = Path(tempfile.gettempdir()) / f"videolake-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = path.lstat()
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ConfigError(f"{path} is not a private folder of this user (mode 0700, owned by uid {os.getuid()}): "
                          "remove it, or point TMPDIR elsewhere")
    return path


def ray_temp_dir() -> Path:
    """Where a run's own local Ray keeps its session folders."""
    path = scratch_dir() / "ray"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    return path


def process_tag() -> str:
    """``<host>-<pid>``: names this process in the leftovers it might leave."""
    return f"{_host()}-{os.getpid()}"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname())[:64] or "host"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive, and not ours to judge
    with contextlib.suppress(OSError):
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:4]
    return True


def sweep_leftovers(lake: str | None = None) -> list[Path]:
    """Remove what runs that are gone left in the scratch folder and in the local ``lake``; what was removed.

    A dead run's Ray session can outlive it in processes (Ray's agents are not always taken down with
    their raylet): this user's processes that still hold files open in a stale session are ended first.
    """
    scratch = scratch_dir()
    removed = [p for p in _entries(scratch) if _stale(p) and _remove(p)]
    for session in (p for p in _entries(scratch / "ray") if _stale(p)):
        end_processes_using(session)
        if _remove(session):
            removed.append(session)
    _remove_dangling(scratch / "ray" / "session_latest")
    if lake is not None and "://" not in lake and os.path.isdir(lake):
        removed += [p for p in _lake_tmp_files(lake) if _stale(p) and _remove(p)]
    return removed


def _lake_tmp_files(lake: str) -> Iterator[Path]:
    """The ``_tmp-`` files of a local lake: beside the marker, the staging files and intents, and (left by older
    layouts or a killed writer) in the tables' folders. Delta logs are not walked: they grow with every commit."""
    for root, dirs, files in os.walk(lake):
        dirs[:] = [d for d in dirs if d != "_delta_log"]
        yield from (Path(root) / f for f in files if f.startswith("_tmp-"))


def remove_ray_sessions_of(pid: int) -> None:
    """Remove the local Ray session folders that the process ``pid`` started (after its ``ray.shutdown``)."""
    for path in _entries(ray_temp_dir()):
        match = _RAY_SESSION.match(path.name)
        if match and int(match["pid"]) == pid:
            _remove(path)
    _remove_dangling(ray_temp_dir() / "session_latest")


def _remove_dangling(link: Path) -> None:
    if link.is_symlink() and not link.exists():
        link.unlink(missing_ok=True)


def end_processes_using(folder: Path, grace_s: float = 5.0) -> list[int]:
    """End (SIGTERM, then SIGKILL after ``grace_s``) this user's processes that hold a file open under ``folder``."""
    prefix = str(folder.resolve()) + os.sep
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_uid == os.getuid() and any(os.readlink(fd).startswith(prefix) for fd in (entry / "fd").iterdir()):
                pids.append(int(entry.name))
    alive = pids
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while (alive := [pid for pid in alive if pid_alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive:
            break
    return pids


def _entries(folder: Path) -> list[Path]:
    return list(folder.iterdir()) if folder.is_dir() else []


def _stale(path: Path) -> bool:
    """A leftover whose process is gone; or, naming none of this host, one untouched for ``STALE_AFTER_S``."""
    match = (_RAY_SESSION.match(path.name) or _SERVER_LOG.match(path.name)  # this host's, by their place
             or re.match(rf"^_tmp-{re.escape(_host())}-(?P<pid>\d+)-[0-9a-f]+-.+\.inprogress$", path.name))
    if match is not None:
        return not pid_alive(int(match["pid"]))
    if _TMP_FILE.match(path.name) is None:
        return False
    with contextlib.suppress(OSError):
        return time.time() - path.lstat().st_mtime > STALE_AFTER_S
    return False


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True
