"""deploy/ agrees with the code: the Dockerfile's sources, pins and entry point, the KubeRay manifests'
fields, images, GPU limits and command line, the Ray cluster launcher config (Ray's own schema)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
IMAGE = f"videolake:{VERSION}-gpu"  # the tag the Dockerfile's header, the README and the manifests use

# Fields of the KubeRay v1 types these manifests use (ray-operator/apis/ray/v1/{raycluster,rayjob}_types.go).
RAYCLUSTER_SPEC = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions",
                   "headServiceAnnotations", "suspend", "authOptions"}
HEAD_GROUP = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams", "template",
                "scaleStrategy"}
AUTOSCALER_OPTIONS = {"resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts", "securityContext",
                      "idleTimeoutSeconds", "upscalingMode"}
RAYJOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
               "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
               "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
               "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend"}


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def _args(instructions) -> dict[str, str]:  # noqa: ANN001
    out = {}
    for kind, rest in instructions:
        if kind == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            out[name] = value.strip().strip('"')
    return out


def _manifest(name: str) -> dict:
    return yaml.safe_load((DEPLOY / "kuberay" / name).read_text())


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def test_the_dockerfile_copies_what_exists_and_installs_the_pinned_project():
    instructions = _dockerfile()
    args = _args(instructions)
    assert next(rest for kind, rest in instructions if kind == "FROM") == "${BASE}"
    assert args["BASE"].startswith("nvidia/cuda:") and "runtime" in args["BASE"]
    makefile_pins = re.search(r"^TORCH_PINS \?= (.+)$", (REPO / "Makefile").read_text(), re.M).group(1).strip()
    assert args["TORCH_PINS"] == makefile_pins

    ignore = (REPO / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = []
    for kind, rest in instructions:
        if kind == "COPY":
            parts = [p for p in rest.split() if not p.startswith("--")]
            for source in parts[:-1]:
                assert (REPO / source).exists(), f"COPY source {source} does not exist"
                assert source in allowed, f"COPY source {source} is excluded by .dockerignore"
                copied.append(source)
    folders = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    assert folders <= set(copied), "every folder of the package is copied into the image"

    runs = " ".join(rest for kind, rest in instructions if kind == "RUN")
    assert "pip install . " in runs and "$TORCH_PINS" in runs and "videolake models" in runs
    cmd = next(rest for kind, rest in instructions if kind == "CMD")
    assert yaml.safe_load(cmd)[0] == "videolake" and "videolake" in PYPROJECT["project"]["scripts"]


def test_the_image_runs_the_ray_the_code_was_tested_with():
    import ray

    ray_version = _args(_dockerfile())["RAY_VERSION"]
    assert ray_version == ray.__version__
    assert _manifest("raycluster.yaml")["spec"]["rayVersion"] == ray_version


def test_docs_and_manifests_name_the_image_the_dockerfile_builds():
    header = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert f"-t {IMAGE} ." in header
    assert f"-t {IMAGE} ." in (REPO / "README.md").read_text()
    cluster = _manifest("raycluster.yaml")["spec"]
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    assert {c["image"] for t in templates for c in _containers(t)} == {IMAGE}
    assert yaml.safe_load((DEPLOY / "ray" / "cluster.yaml").read_text())["docker"]["image"] == IMAGE


def test_the_raycluster_uses_kuberay_fields_and_its_gpu_limits_agree_with_ray():
    manifest = _manifest("raycluster.yaml")
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayCluster")
    spec = manifest["spec"]
    assert set(spec) <= RAYCLUSTER_SPEC
    assert spec["enableInTreeAutoscaling"] is True
    assert set(spec["autoscalerOptions"]) <= AUTOSCALER_OPTIONS
    assert spec["autoscalerOptions"]["upscalingMode"] in ("Default", "Aggressive", "Conservative")
    assert 0 < spec["autoscalerOptions"]["idleTimeoutSeconds"] <= 600  # idle GPU pods go away after a run
    head = spec["headGroupSpec"]
    assert set(head) <= HEAD_GROUP and {"rayStartParams", "template"} <= set(head)
    assert head["rayStartParams"]["num-cpus"] == "0"  # the head coordinates; actors go to the workers
    assert spec["workerGroupSpecs"], "a GPU worker group"
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP and {"groupName", "minReplicas", "maxReplicas", "rayStartParams",
                                               "template"} <= set(group)
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        for params in (group["rayStartParams"], head["rayStartParams"]):
            assert all(isinstance(v, str) for v in params.values()), "rayStartParams is a map of strings"
        (container,) = _containers(group["template"])
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        gpus = int(group["rayStartParams"]["num-gpus"])
        assert gpus >= 1 and limits["nvidia.com/gpu"] == requests["nvidia.com/gpu"] == gpus


def _cli_options() -> set[str]:
    import typer.main

    from videolake.cli import app

    command = typer.main.get_command(app).commands["run"]
    return {opt for param in command.params for opt in param.opts if opt.startswith("-")}


def test_the_rayjob_runs_videolake_with_options_the_cli_has_on_that_cluster():
    job = _manifest("rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert set(spec) <= RAYJOB_SPEC
    assert spec["clusterSelector"] == {"ray.io/cluster": _manifest("raycluster.yaml")["metadata"]["name"]}
    assert spec["submissionMode"] in ("K8sJobMode", "HTTPMode", "InteractiveMode")
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["videolake", "run"]
    options = [a for a in argv if a.startswith("-")]
    assert set(options) <= _cli_options(), set(options) - _cli_options()
    value = {opt: argv[argv.index(opt) + 1] for opt in ("--out", "--ray-address", "--device", "--max-workers")}
    assert (value["--ray-address"], value["--device"]) == ("auto", "cuda")  # inside the cluster, on its GPUs
    # the backlog may ask for one actor per GPU the autoscaler can add, and no more
    groups = _manifest("raycluster.yaml")["spec"]["workerGroupSpecs"]
    assert int(value["--max-workers"]) == sum(g["maxReplicas"] * int(g["rayStartParams"]["num-gpus"]) for g in groups)
    assert all(g["minReplicas"] == 0 for g in groups)  # no GPU pod between runs
    assert value["--out"].startswith("s3://") and argv[2].startswith("s3://")


def test_the_ray_cluster_launcher_config_passes_ray_s_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((DEPLOY / "ray" / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    workers = config["available_node_types"]["gpu_worker"]
    assert 0 == workers["min_workers"] < workers["max_workers"] <= config["max_workers"]  # none between runs
    assert 0 < config["idle_timeout_minutes"] <= 10
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    assert any("--num-cpus=0" in c for c in config["head_start_ray_commands"])
    assert "videolake models" in config["setup_commands"]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_manifests_are_single_yaml_documents(name):
    assert len(list(yaml.safe_load_all((DEPLOY / "kuberay" / name).read_text()))) == 1


def test_every_cluster_config_turns_on_ray_token_authentication():
    from packaging.version import Version

    cluster = _manifest("raycluster.yaml")["spec"]
    assert cluster["authOptions"] == {"mode": "token"} and Version(cluster["rayVersion"]) >= Version("2.52")
    launcher = yaml.safe_load((DEPLOY / "ray" / "cluster.yaml").read_text())
    starts = launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token ray start" in c for c in starts if "ray start" in c)
    assert launcher["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
