"""Shared fixtures: real sample videos, generated media, a real Prefect API server, a real Ray."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from videolake.pipeline.samples import write_samples
from tests.media import make_corpus

# Small, fast settings for end-to-end tests: the real models on real video, fewer pixels and frames.
# FAST_POSE runs the pose model too (the library's tests, and the lake the render and label tests read);
# FAST is box-only, for the tests of orchestration (flows, workers, CLI, buckets, clusters): at these
# settings pose costs about as much as the detector, and what those tests check does not depend on it.
FAST_POSE = {"imgsz": 320, "analysis_fps": 4.0, "batch": 8}
FAST = {**FAST_POSE, "pose": "none"}


def pytest_collection_modifyitems(config, items):  # noqa: ANN001
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "needs_cuda" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("samples")
    write_samples(directory)
    return directory


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A real Prefect API server on loopback, used by in-process flows and CLI subprocesses."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from videolake.flows.server import free_port, wait_until_healthy
    from videolake.pipeline.errors import PrefectServerError

    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false", "PREFECT_API_URL": url}
    prefect_bin = str(Path(sys.executable).parent / "prefect")
    log = open(home / "server.log", "w")
    server = subprocess.Popen([prefect_bin, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(url, server, home / "server.log")
    except PrefectServerError:
        server.kill()
        raise
    with temporary_settings({PREFECT_API_URL: url}):
        yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray for the session; flows join it instead of starting their own."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024 * 1024)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto) on loopback for the session."""
    from tests.objectstore import moto_server

    with moto_server() as server:
        yield server


@pytest.fixture
def s3(s3_server, monkeypatch):
    """This test's S3 credentials and endpoint in the environment (the standard variables), and a client."""
    import uuid

    import s3fs

    from tests.objectstore import s3_env

    for key, value in s3_env(s3_server.url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("VIDEOLAKE_STORAGE_OPTIONS", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    prefix = uuid.uuid4().hex[:8]
    fs.prefix = prefix  # bucket names unique to this test: f"{fs.prefix}-cams"
    yield fs
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def cli_env(prefect_api, tmp_path):
    """Environment for ``videolake`` subprocesses: the test's Prefect API, no inherited Ray."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PREFECT_API_URL"] = prefect_api
    env["PYTHONUNBUFFERED"] = "1"
    return env


def videolake_bin() -> str:
    found = shutil.which("videolake", path=str(Path(sys.executable).parent))
    assert found, "the videolake entry point is not installed in this environment"
    return found
