"""The README's path on a real Prefect server process: serve or deploy, `prefect deployment run`, read the API."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import psutil
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.layout import Layout
from tests.conftest import REPO, STAGES, tiny_params
from tests.flows.api import artifacts_of, task_states_of

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 120  # seconds; a cold server migrates its SQLite database first
RUN_TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    """Stop a process we started and every process it started (flow runs get sessions of their own)."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    for signal_it, grace in ((process.terminate, 20), (process.kill, 10)):
        if process.poll() is None:
            signal_it()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                continue
    for child in descendants:
        if child.is_running():
            child.kill()
    psutil.wait_procs(descendants, timeout=10)


def wait_for(what: str, check, process: subprocess.Popen, log: Path, timeout: float = STARTUP_TIMEOUT):
    """Poll `check()` until it returns something truthy; fail early, with the log, if `process` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{what}: process exited {process.returncode}\n{log.read_text()[-3000:]}"
        result = check()
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"{what}: not ready after {timeout}s\n{log.read_text()[-3000:]}")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`prefect server start` on a free loopback port, SQLite under a temporary PREFECT_HOME; yields the env."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env['PATH']}",
        CUDA_VISIBLE_DEVICES="",
        PREFECT_HOME=str(home),
        PREFECT_API_URL=url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    # The runner and the worker poll for runs every 10 s by default; 2 s keeps the test short.
    env.update(PREFECT_RUNNER_POLL_FREQUENCY="2", PREFECT_WORKER_QUERY_SECONDS="2")
    log = home / "server.log"
    process = start(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=home,
        env=env,
        log=log,
    )
    try:
        wait_for("prefect server", lambda: healthy(url), process, log)
        with temporary_settings({PREFECT_API_URL: url}):
            yield env
    finally:
        stop(process)


def prefect(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "prefect"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT + 60,
        check=False,
    )


def deployment_run(env: dict[str, str], cwd: Path, name: str, *params: str) -> tuple[int, FlowRun]:
    """`prefect deployment run NAME -p ... --watch`: its exit code and the flow run as the API reports it."""
    args = ["deployment", "run", name, *(arg for p in params for arg in ("-p", p))]
    result = prefect(env, cwd, *args, "--watch", "--watch-timeout", str(RUN_TIMEOUT))
    found = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
    assert found, f"{result.stdout}\n{result.stderr}"
    with get_client(sync_client=True) as client:
        return result.returncode, client.read_flow_run(UUID(found.group(1)))


def registered(name: str):
    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:  # not registered yet
            return None


def test_served_pipeline_and_nightly_runs_from_the_cli(server: dict[str, str], tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    shutil.copy(REPO / "prefect.toml", project)  # the step and YOLOv5 logs go to the flow-run logs
    log = tmp_path / "serve.log"
    serve = start([str(BIN / "lightweight"), "serve"], cwd=project, env=server, log=log)
    try:
        pipeline_deployment = wait_for("pipeline/lightweight", lambda: registered("pipeline/lightweight"), serve, log)
        nightly_deployment = wait_for("nightly-eval", lambda: registered("nightly-eval/lightweight"), serve, log)
        assert pipeline_deployment.entrypoint == "flows.pipeline.pipeline"
        assert pipeline_deployment.parameters == {"root": str(project.resolve())}
        [schedule] = nightly_deployment.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 2 * * *", "UTC", True)

        code, run = deployment_run(server, tmp_path, "pipeline/lightweight", "prune_ratio=0.4")
        assert code == 0 and run.state.is_completed(), (run.state, log.read_text()[-3000:])
        assert run.parameters["prune_ratio"] == 0.4 and run.deployment_id == pipeline_deployment.id
        assert task_states_of(run.id) == dict.fromkeys(STAGES, "Completed")
        assert json.loads(Layout(project).prune_outputs.metrics.read_text())["ratio"] == 0.4  # the -p reached prune
        artifacts = artifacts_of(run.id)
        assert {key: artifact.type for key, artifact in artifacts.items()} == {
            "pipeline-summary": "markdown",
            "model-comparison": "table",
            "people-counts": "table",
            "people-flow": "table",
        }
        assert "ratio **0.4**" in artifacts["pipeline-summary"].data
        rows = json.loads(artifacts["model-comparison"].data)
        val = json.loads(Layout(project).val_outputs.metrics.read_text())
        assert [row["model"] for row in rows] == ["base", "pruned", "finetuned"]
        assert [row["map50"] for row in rows] == [val[name]["map50"] for name in ("base", "pruned", "finetuned")]
        flow_rows = json.loads(artifacts["people-flow"].data)
        track = json.loads((project / "metrics" / "track.json").read_text())
        assert {row["video"]: row["people"] for row in flow_rows} == {
            name: video["people"] for name, video in track["videos"].items()
        }
        people = json.loads(artifacts["people-counts"].data)
        flow = json.loads(Layout(project).flow_outputs.metrics.read_text())
        assert {row["video"]: row["mean"] for row in people} == {
            name: round(video["people_per_frame_mean"], 3) for name, video in flow["videos"].items()
        }

        code, night = deployment_run(server, tmp_path, "nightly-eval/lightweight")
        assert code == 0 and night.state.is_completed(), (night.state, log.read_text()[-3000:])
        assert set(artifacts_of(night.id)) == {"nightly-summary"}

        history = Layout(project).nightly_history
        tampered = json.loads(history.read_text())
        tampered[-1]["map50"] += 0.5  # last night "scored" 0.5 higher: tonight is a regression
        history.write_text(json.dumps(tampered))
        code, regressed = deployment_run(server, tmp_path, "nightly-eval/lightweight")
        assert code == 1 and regressed.state.is_failed(), regressed.state
        assert "mAP50 fell from" in regressed.state.message
        alert = artifacts_of(regressed.id)["nightly-alert"]
        assert alert.type == "markdown" and "nightly.max_map50_drop 0.02" in alert.data
    finally:
        stop(serve)
    assert serve.returncode is not None


def test_work_pool_deployments_from_prefect_yaml_run_on_a_worker(
    server: dict[str, str], finetuned_project: Path, tmp_path: Path
):
    checkout = tmp_path / "checkout"  # where `prefect deploy` runs: only prefect.yaml is read from it
    checkout.mkdir()
    shutil.copy(REPO / "prefect.yaml", checkout)
    created = prefect(server, checkout, "work-pool", "create", "lightweight", "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = prefect(server, checkout, "--no-prompt", "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    nightly = registered("nightly-eval/lightweight")
    assert (nightly.work_pool_name, nightly.entrypoint) == ("lightweight", "flows.nightly.nightly_eval")
    assert nightly.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $LIGHTWEIGHT_ROOT }}"}}
    ]
    assert nightly.schedules[0].schedule.cron == "0 2 * * *"
    assert registered("pipeline/lightweight").work_pool_name == "lightweight"

    log = tmp_path / "worker.log"
    worker_env = {**server, "LIGHTWEIGHT_ROOT": str(finetuned_project)}
    worker = start(
        [str(BIN / "prefect"), "worker", "start", "--pool", "lightweight"], cwd=tmp_path, env=worker_env, log=log
    )
    try:
        code, night = deployment_run(server, tmp_path, "nightly-eval/lightweight")
        assert code == 0 and night.state.is_completed(), (night.state, log.read_text()[-3000:])
        assert set(artifacts_of(night.id)) == {"nightly-summary"}
        assert len(json.loads(Layout(finetuned_project).nightly_history.read_text())) == 1  # ran in the project
    finally:
        stop(worker)
