#!/usr/bin/env python3
"""A real Ray cluster and a Prefect server on one machine, as separate processes.

    python deploy/local/cluster.py up       # start, print the addresses (shell `export` lines)
    python deploy/local/cluster.py status   # what runs, from the state file
    python deploy/local/cluster.py down     # stop everything this script started

It starts a Prefect server, a Ray head (no CPUs: it only coordinates, like a cluster's head)
and two Ray worker nodes with different resources (worker a: 1 CPU; worker b: 1 CPU and,
with VIDEOLAKE_WORKER_B_GPUS, declared GPUs). With VIDEOLAKE_AUTOSCALING=1 it starts no worker
node: the head runs Ray's autoscaler with its fake multi-node provider (``fake_multinode``, the
config ``autoscaling_config`` writes), which starts 1-CPU worker nodes on this machine when a run
asks for them (up to VIDEOLAKE_AUTOSCALING_MAX_NODES, default 2) and stops them once idle for
VIDEOLAKE_IDLE_TIMEOUT_S (default 10). Each process runs in its own process group (the
autoscaler's nodes in the head's), so ``down`` (or a test killing a node) stops exactly those
processes and nothing else on the machine: it never calls ``ray stop``, which would stop every
Ray on the machine.

Settings (environment): VIDEOLAKE_CLUSTER_DIR (state, logs, Ray's temp dir; default
/tmp/videolake-cluster), VIDEOLAKE_RAY_PORT (head's GCS port, default 26379; the ports of the
nodes' agents are counted from it), VIDEOLAKE_RAY_CLIENT_PORT (default 26001),
VIDEOLAKE_PREFECT_PORT (default 46420), VIDEOLAKE_OBJECT_STORE_MB (per node, default 200),
VIDEOLAKE_WORKER_B_GPUS (default 0).

Only the standard library: it runs the ``ray`` and ``prefect`` executables next to this
Python (the project's virtual environment) or on PATH.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Settings:
    directory: Path
    ray_port: int
    ray_client_port: int
    prefect_port: int
    object_store_mb: int
    worker_b_gpus: int
    autoscaling: bool = False
    autoscaling_max_nodes: int = 2
    idle_timeout_s: float = 10.0

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            directory=Path(env.get("VIDEOLAKE_CLUSTER_DIR", "/tmp/videolake-cluster")),
            ray_port=int(env.get("VIDEOLAKE_RAY_PORT", "26379")),
            ray_client_port=int(env.get("VIDEOLAKE_RAY_CLIENT_PORT", "26001")),
            prefect_port=int(env.get("VIDEOLAKE_PREFECT_PORT", "46420")),
            object_store_mb=int(env.get("VIDEOLAKE_OBJECT_STORE_MB", "200")),
            worker_b_gpus=int(env.get("VIDEOLAKE_WORKER_B_GPUS", "0")),
            autoscaling=env.get("VIDEOLAKE_AUTOSCALING", "0") == "1",
            autoscaling_max_nodes=int(env.get("VIDEOLAKE_AUTOSCALING_MAX_NODES", "2")),
            idle_timeout_s=float(env.get("VIDEOLAKE_IDLE_TIMEOUT_S", "10")),
        )

    @property
    def state_file(self) -> Path:
        return self.directory / "cluster.json"


@dataclass
class Process:
    name: str
    pid: int  # also its process group id
    log: str
    resources: dict = field(default_factory=dict)


@dataclass
class Cluster:
    prefect_api_url: str
    ray_address: str
    ray_auth_token_path: str
    ray_client_address: str
    processes: list[Process]

    def exports(self) -> str:
        client = (f"# from another machine: RAY_ADDRESS={self.ray_client_address}" if self.ray_client_address
                  else '# no Ray client server: pip install "ray[client]" to serve ray:// addresses')
        return (f"export PREFECT_API_URL={self.prefect_api_url}\nexport RAY_ADDRESS={self.ray_address}\n"
                f"export RAY_AUTH_MODE=token\nexport RAY_AUTH_TOKEN_PATH={self.ray_auth_token_path}\n{client}\n")


def _executable(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        sys.exit(f"error: `{name}` not found next to {sys.executable} or on PATH (install the project first)")
    return found


def _spawn(name: str, argv: list[str], env: dict, settings: Settings, resources: dict | None = None) -> Process:
    log_path = settings.directory / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # its own process group: stop it, and only it, by pid
    return Process(name, proc.pid, str(log_path), resources or {})


def _alive(pid: int) -> bool:
    """Whether any process of the group led by ``pid`` is left."""
    try:
        os.waitpid(pid, os.WNOHANG)  # reap the leader when it is our own child that exited
    except ChildProcessError:
        pass
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_for(what: str, ready, process: Process) -> None:  # noqa: ANN001 - a predicate
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if not _alive(process.pid) or time.monotonic() > deadline:
            tail = Path(process.log).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} did not start; the end of {process.log}:\n{tail}")
        time.sleep(0.5)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _has_ray_client() -> bool:
    """Ray's client server (``ray://``) needs ``pip install "ray[client]"`` (grpcio)."""
    return importlib.util.find_spec("grpc") is not None


def autoscaling_config(settings: Settings) -> dict:
    """Ray's autoscaler on this machine: the fake multi-node provider starts each worker node as local
    processes (1 CPU each) and stops them once idle; the head has no CPUs, as on a real cluster."""
    return {
        "cluster_name": "videolake-local",
        "max_workers": settings.autoscaling_max_nodes,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": settings.idle_timeout_s / 60,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": f"{HOST}:{settings.ray_port}"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "ray.worker.cpu": {"resources": {"CPU": 1, "object_store_memory": settings.object_store_mb * 1024 * 1024},
                               "node_config": {}, "min_workers": 0, "max_workers": settings.autoscaling_max_nodes},
        },
        "head_node_type": "ray.head.default",
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def _ray_node(name: str, settings: Settings, index: int, head: bool, cpus: int, gpus: int,
              resources: dict, env: dict) -> Process:
    base = settings.ray_port + 10 * (index + 1)  # per-node agent ports, so nodes on one host never collide
    argv = [_executable("ray"), "start", "--block", "--disable-usage-stats", f"--num-cpus={cpus}",
            f"--num-gpus={gpus}", f"--object-store-memory={settings.object_store_mb * 1024 * 1024}",
            f"--dashboard-agent-listen-port={base}", f"--dashboard-agent-grpc-port={base + 1}",
            f"--metrics-export-port={base + 2}", f"--runtime-env-agent-port={base + 3}"]
    if resources:
        argv.append(f"--resources={json.dumps(resources)}")
    if head:
        argv += ["--head", f"--port={settings.ray_port}", "--include-dashboard=false",
                 f"--temp-dir={settings.directory / 'ray'}"]
        if settings.autoscaling:
            config = settings.directory / "autoscaling.json"  # JSON is YAML: what `--autoscaling-config` reads
            config.write_text(json.dumps(autoscaling_config(settings), indent=2))
            argv += [f"--autoscaling-config={config}", f"--node-ip-address={HOST}"]
            env = {**env, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        if _has_ray_client():
            argv.append(f"--ray-client-server-port={settings.ray_client_port}")
    else:
        argv.append(f"--address={HOST}:{settings.ray_port}")
    process = _spawn(name, argv, env, settings, {"CPU": cpus, "GPU": gpus, **resources})
    _wait_for(f"Ray node {name}", lambda: "Ray runtime started" in Path(process.log).read_text(errors="replace"),
              process)
    return process


def up(settings: Settings) -> Cluster:
    if settings.state_file.exists():
        sys.exit(f"error: a cluster is already up ({settings.state_file}); run `down` first")
    settings.directory.mkdir(parents=True, exist_ok=True)
    token_path = settings.directory / "auth_token"  # Ray's token authentication, one token for this cluster
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PREFECT_"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path))
    prefect_url = f"http://{HOST}:{settings.prefect_port}/api"
    prefect_env = {**env, "PREFECT_HOME": str(settings.directory / "prefect"), "PREFECT_API_URL": prefect_url,
                   "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    cluster = Cluster(prefect_url, f"{HOST}:{settings.ray_port}", str(token_path), f"ray://{HOST}:{settings.ray_client_port}" if _has_ray_client() else "", [])
    try:
        prefect = _spawn("prefect-server", [_executable("prefect"), "server", "start", "--host", HOST,
                                            "--port", str(settings.prefect_port)], prefect_env, settings)
        cluster.processes.append(prefect)
        cluster.processes.append(_ray_node("ray-head", settings, 0, True, 0, 0, {}, env))
        if not settings.autoscaling:  # else the autoscaler starts worker nodes when a run asks for them
            cluster.processes.append(_ray_node("ray-worker-a", settings, 1, False, 1, 0, {"videolake_worker_a": 1}, env))
            cluster.processes.append(_ray_node("ray-worker-b", settings, 2, False, 1, settings.worker_b_gpus,
                                               {"videolake_worker_b": 1}, env))
        _wait_for("the Prefect server", lambda: _http_ok(f"{prefect_url}/health"), prefect)
    except BaseException:
        _stop(cluster.processes)
        raise
    settings.state_file.write_text(json.dumps(asdict(cluster), indent=2))
    return cluster


def load(settings: Settings) -> Cluster | None:
    if not settings.state_file.exists():
        return None
    data = json.loads(settings.state_file.read_text())
    data["processes"] = [Process(**p) for p in data["processes"]]
    return Cluster(**data)


def _stop(processes: list[Process]) -> None:
    """SIGTERM each process group (workers first), SIGKILL what is left after a grace period."""
    for process in reversed(processes):
        if _alive(process.pid):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)


def down(settings: Settings) -> None:
    cluster = load(settings)
    if cluster is None:
        print(f"no cluster is up ({settings.state_file} not found)", file=sys.stderr)
        return
    _stop(cluster.processes)
    settings.state_file.unlink()
    print(f"stopped {len(cluster.processes)} processes; logs in {settings.directory / 'logs'}", file=sys.stderr)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("up", "down", "status"):
        print(__doc__, file=sys.stderr)
        return 2
    settings = Settings.from_env()
    if argv[0] == "up":
        cluster = up(settings)
        for p in cluster.processes:
            print(f"{p.name}: pid {p.pid} {p.resources or ''} log {p.log}", file=sys.stderr)
        print(cluster.exports(), end="")
    elif argv[0] == "down":
        down(settings)
    else:
        cluster = load(settings)
        if cluster is None:
            print("down")
            return 1
        for p in cluster.processes:
            print(f"{p.name}: pid {p.pid} {'running' if _alive(p.pid) else 'gone'} {p.resources or ''}")
        print(cluster.exports(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
