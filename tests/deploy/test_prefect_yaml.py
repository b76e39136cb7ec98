"""deploy/prefect/prefect.yaml agrees with the flow, and `prefect deploy` registers it on a real Prefect API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "deploy" / "prefect" / "prefect.yaml"


def _declared() -> dict:
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    (deployment,) = spec["deployments"]
    return deployment


def test_the_declared_deployment_matches_the_flow_and_the_cli():
    from prefect.client.schemas.schedules import CronSchedule

    from videolake.flows.analyze import analyze
    from videolake.pipeline.config import RunConfig

    d = _declared()
    path, _, name = d["entrypoint"].partition(":")
    assert (ROOT / path).is_file() and name == analyze.fn.__name__
    analyze.validate_parameters(d["parameters"])  # every parameter exists and has the right type
    RunConfig.from_mapping(d["parameters"]["config"])  # the run settings are valid videolake settings
    assert d["parameters"]["show_progress"] is False
    (schedule,) = d["schedules"]
    assert CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # raises on a bad cron line
    assert d["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    env = d["work_pool"]["job_variables"]["env"]
    assert env["RAY_ADDRESS"] == "auto" and not any("SECRET" in k or "KEY" in k for k in env)


def test_prefect_deploy_registers_the_deployment_with_its_schedule_and_limit(prefect_api, cli_env, tmp_path):
    prefect = str(Path(sys.executable).parent / "prefect")
    pool = subprocess.run([prefect, "work-pool", "create", "videolake-ray", "--type", "process", "--overwrite"],
                          env=cli_env, capture_output=True, text=True, timeout=120)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deploy = subprocess.run([prefect, "--no-prompt", "deploy", "--prefect-file", str(PREFECT_YAML), "--all"],
                            env=cli_env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr

    async def read():
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            return await client.read_deployment_by_name("analyze/videolake-analyze")

    deployment = asyncio.run(read())
    declared = _declared()
    assert deployment.work_pool_name == "videolake-ray"
    assert deployment.parameters == declared["parameters"]
    assert [s.schedule.cron for s in deployment.schedules] == [declared["schedules"][0]["cron"]]
    assert deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert deployment.job_variables["env"]["RAY_ADDRESS"] == "auto"
