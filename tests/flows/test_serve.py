"""`lightweight serve`: what it would register, and its refusals before registering anything."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from flows.deployments import build_deployments
from tasks.config import NightlyConfig, load_params
from tests.conftest import REPO

BIN = Path(sys.executable).parent


def test_both_deployments_are_bound_to_the_project_and_nightly_follows_params(tmp_path: Path):
    nightly = NightlyConfig(cron="30 3 * * 1", timezone="Europe/Paris")
    pipeline, nightly_eval = build_deployments(tmp_path, nightly, name="team", schedule=False)
    assert (pipeline.flow_name, pipeline.name, pipeline.entrypoint) == ("pipeline", "team", "flows.pipeline.pipeline")
    assert nightly_eval.entrypoint == "flows.nightly.nightly_eval" and nightly_eval.flow_name == "nightly-eval"
    assert pipeline.parameters == nightly_eval.parameters == {"root": str(tmp_path.resolve())}
    assert pipeline.schedules in (None, [])
    [schedule] = nightly_eval.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 3 * * 1", "Europe/Paris")
    assert nightly_eval.paused is True  # --no-schedule


def test_prefect_yaml_schedules_nightly_as_params_yaml_does():
    """prefect.yaml cannot read params.yaml, so its copy of the nightly schedule is held equal here."""
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    [nightly] = [d for d in deployments if d["entrypoint"] == "flows.nightly.nightly_eval"]
    [schedule] = nightly["schedules"]
    params = load_params(REPO / "params.yaml").nightly
    assert (schedule["cron"], schedule["timezone"]) == (params.cron, params.timezone)


def serve(project: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    clean.update(PREFECT_HOME=str(project / ".prefect"), **env)
    return subprocess.run(
        [str(BIN / "lightweight"), "serve"],
        cwd=project,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_serve_without_a_server_says_how_to_start_one(tmp_path: Path):
    (tmp_path / "params.yaml").write_text("{}\n")
    result = serve(tmp_path)
    assert result.returncode == 2 and "prefect server start" in result.stderr and "PREFECT_API_URL" in result.stderr


def test_serve_with_bad_nightly_params_names_the_key(tmp_path: Path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"nightly": {"cron": "every night"}}))
    result = serve(tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api")
    assert result.returncode == 2 and "nightly.cron: expected five cron fields" in result.stderr
