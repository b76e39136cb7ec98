"""The Prefect API of a one-off ``videolake run``: the configured server, or a temporary local one.

Without ``PREFECT_API_URL``, Prefect itself would start a temporary server at the first flow
run ("ephemeral" mode): it imports Prefect's server into the run's own process and then waits
for the server's process, 12-20 s on 2 cores before anything else happens. ``videolake run``
instead starts ``prefect server start`` (the same API and database under ``PREFECT_HOME``;
no UI, scheduler or late-run marking: nothing here needs them) as a child process as soon as it
knows there is work, so the server comes up on one core while Ray and the workers' models start
on the other; it is stopped when the run ends. It listens on 127.0.0.1 only, logs into the private
scratch folder (a killed run's log is swept at the next start) and prunes runs older than 30 days
from its database (``PREFECT_RETENTION_ENV``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Iterator

from videolake.pipeline.errors import PrefectServerError
from videolake.pipeline.scratch import scratch_dir, sweep_leftovers

__all__ = ["prefect_api_in_background", "wait_until_healthy", "free_port", "stop_process_group", "PREFECT_RETENTION_ENV"]

_HOST = "127.0.0.1"
# Prefect's own database vacuum (it runs when a server starts, then hourly): flow runs, their task runs
# and logs older than 30 days go. Defaults: a PREFECT_SERVER_SERVICES_DB_VACUUM_* already set wins.
PREFECT_RETENTION_ENV = {"PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
                         "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(30 * 24 * 3600)}
_START_TIMEOUT_S = 120.0  # a first start creates and migrates the database
_STOP_TIMEOUT_S = 10.0


@contextlib.contextmanager
def prefect_api_in_background() -> Iterator[Callable[[], None]]:
    """Start a temporary Prefect server now, in its own process, unless an API is configured.

    Yields a function that waits until the server answers and points this process's Prefect
    settings at it; call it before the first flow run. The server stops when the block ends.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        yield lambda: None  # a real server; or none allowed, and the flow run says so
        return
    port = free_port()
    url = f"http://{_HOST}:{port}/api"
    sweep_leftovers()  # logs of servers whose runs were killed
    log_path = scratch_dir() / f"prefect-server-{os.getpid()}-{uuid.uuid4().hex[:8]}.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed when the server stops
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", _HOST, "--port", str(port),
         "--no-ui", "--no-scheduler", "--no-late-runs", "--analytics-off"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_parent_death_signal(), env={**PREFECT_RETENTION_ENV, **os.environ},
    )
    with contextlib.ExitStack() as stack:
        def wait() -> None:
            wait_until_healthy(url, process, log_path)
            stack.enter_context(temporary_settings(updates={PREFECT_API_URL: url}))

        try:
            yield wait
        finally:
            stack.close()
            stop_process_group(process)
            log.close()
            log_path.unlink(missing_ok=True)


def _parent_death_signal() -> Callable[[], None] | None:
    """For ``preexec_fn`` on Linux: the kernel sends the server SIGTERM if this process dies without
    stopping it (``kill -9``, a closed terminal), so no server outlives its run. ``None`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only makes the call
    pr_set_pdeathsig = 1

    def set_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_signal


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float = _START_TIMEOUT_S) -> None:
    """Block until the Prefect API at ``url`` answers; raise with the server's log if it exits or never answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PrefectServerError(f"the Prefect server for {url} exited with code {process.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise PrefectServerError(f"the Prefect server for {url} did not answer within {timeout_s:.0f} s: {_tail(log)}")


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group a ``start_new_session`` child leads; SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "(no output)"
