"""The Prefect flow: cached on contents, params and code; a param change reruns only what follows it."""

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler

from flows.pipeline import pipeline
from tasks.config import StorageConfig
from tests.conftest import REPO, STAGES, tiny_params
from tests.dag import expected_reruns, importers, snapshot
from tests.flows.harness import local_prefect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    storage = tmp_path_factory.mktemp("prefect-results")
    with local_prefect(storage):
        yield


@pytest.fixture(scope="module")
def flowed_once(prefect_server, tmp_path_factory: pytest.TempPathFactory):
    """A project after its first flow run (once for the module; tests work on copies), and that run's state."""
    project = tmp_path_factory.mktemp("flowed") / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    state = pipeline(root=project, return_state=True)
    assert state.is_completed(), state
    return project, state


@pytest.fixture
def project(flowed_once, tmp_path: Path) -> Path:
    """A copy, elsewhere, of the project after its first flow run."""
    return Path(shutil.copytree(flowed_once[0], tmp_path / "project"))


def task_states(flow_state) -> dict[str, str]:
    """{stage: state of its last task run}: a cached result whose outputs another run replaced is followed by
    a second run of the stage that refreshes it (flows/steps.py), and that second run is what happened."""
    flow_run_id = flow_state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name.rsplit("-", 1)[0]: run.state.name for run in sorted(runs, key=lambda run: run.created)}


def flow_run_logs(flow_state) -> list[str]:
    APILogHandler().flush()
    flow_run_id = flow_state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [f"{log.name}: {log.message}" for log in logs]


def run_pipeline(project: Path, **overrides) -> dict[str, str]:
    state = pipeline(root=project, overrides=overrides or None, return_state=True)
    assert state.is_completed(), state
    return task_states(state)


def test_every_stage_ran_and_logs_reach_the_flow_run(flowed_once):
    project, state = flowed_once
    assert task_states(state) == rerun(*STAGES)
    for output in (
        "models/base.pt",
        "models/pruned.pt",
        "models/pruned.yaml",
        "models/finetuned.pt",
        "metrics/val.json",
        "reports/compare.md",
        "data/crops/index.csv",
        "data/predictions.csv",
        "metrics/flow.json",
        "metrics/macs.json",
        "data/people.csv",
        "metrics/track.json",
    ):
        assert (project / output).is_file(), output
    logs = flow_run_logs(state)
    assert any(line.startswith("tasks.demo_data: demo data in") for line in logs), logs[:20]
    assert any(line.startswith("yolov5: ") and "summary" in line for line in logs), logs[:20]


def rerun(*stages: str) -> dict[str, str]:
    """The task states expected when exactly `stages` run and the rest come from the cache."""
    return {stage: "Completed" if stage in stages else "Cached" for stage in STAGES}


def run_after(project: Path, edited: frozenset[str] = frozenset(), **overrides) -> tuple[dict[str, str], set[str]]:
    """Run the flow with `overrides`: (task states, the stages whose params, code or inputs changed)."""
    previous = yaml.safe_load((project / "params.yaml").read_text())
    before = snapshot(project)
    for dotted, value in overrides.items():  # the flow's overrides, written down for the snapshot
        section, key = dotted.split(".")
        previous.setdefault(section, {})[key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(previous))
    states = run_pipeline(project)
    return states, expected_reruns(before, snapshot(project), edited)


def test_rerun_is_cached_and_a_change_reruns_exactly_what_it_affects(project: Path, tmp_path, monkeypatch):
    assert run_pipeline(project) == rerun()  # a copy elsewhere: keys are contents (and paths within the project)

    # base first, so that one retrained base serves the changes after it and the way back
    for change, certain in (
        ({"base.imgsz": 96}, {"base", "prune", "finetune", "val"}),
        ({"finetune.epochs": 2}, {"finetune", "val"}),
        ({"detect.interval": 3}, {"detect", "flow_report", "macs", "track"}),
        ({"prune.ratio": 0.37}, {"prune", "finetune", "val"}),
    ):
        states, expected = run_after(project, **change)
        assert states == rerun(*expected), change
        assert certain <= expected, change
        if "base.imgsz" in change:
            pruned = (project / "models" / "pruned.pt").read_bytes()
            detections = {path.name: path.read_bytes() for path in (project / "data" / "detections").glob("*.csv")}

    # Back to the settings after the base change: their cached results no longer describe the files on disk, so
    # the stages run again and write them back (the detections too, a task per video).
    first = tiny_params()
    run_after(
        project,
        **{
            "prune.ratio": first["prune"]["ratio"],
            "finetune.epochs": first["finetune"]["epochs"],
            "detect.interval": first["detect"]["interval"],
        },
    )
    assert (project / "models" / "pruned.pt").read_bytes() == pruned
    assert {path.name: path.read_bytes() for path in (project / "data" / "detections").glob("*.csv")} == detections

    # A helper module edited: exactly the stages that import it run again (the keys hash this copy's code).
    code = tmp_path / "code"
    shutil.copytree(REPO / "tasks", code / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr("tasks.registry.PROJECT", code)
    monkeypatch.setattr("tasks.registry.TASKS", code / "tasks")
    assert run_pipeline(project) == rerun()
    with (code / "tasks" / "boxes.py").open("a") as handle:
        handle.write("\n# an edit that changes nothing computed\n")
    states, expected = run_after(project, frozenset({"tasks/boxes.py"}))
    assert states == rerun(*importers("tasks/boxes.py")) == rerun(*expected)


def test_a_deleted_output_is_rebuilt_not_served_from_cache(project: Path):
    (project / "models" / "base.pt").unlink()
    states = run_pipeline(project)
    assert states["demo_data"] == "Cached" and states["base"] == "Completed"
    assert (project / "models" / "base.pt").is_file()
    assert run_pipeline(project) == rerun()


def test_publish_puts_the_final_artifacts_on_s3(project: Path, s3_server):
    cfg = StorageConfig(endpoint_url=s3_server.endpoint, bucket="artifacts", prefix="team")
    s3_server.client().create_bucket(Bucket="artifacts")
    storage = {f"storage.{key}": getattr(cfg, key) for key in ("endpoint_url", "bucket", "prefix")}
    state = pipeline(root=project, overrides=storage, publish=True, return_state=True)
    assert state.is_completed(), state
    published = state.result()["published"]
    keys = {obj["Key"] for obj in s3_server.client().list_objects_v2(Bucket="artifacts")["Contents"]}
    for name in ("models/finetuned.pt", "metrics/flow.json", "data/predictions.csv", "reports/compare.md"):
        assert f"team/publish/{name}" in keys
        assert published["files"][name]["sha256"] == hashlib.sha256((project / name).read_bytes()).hexdigest()
