"""Detection fans videos out over Prefect's task runner; on a Dask cluster it gives the outputs of a sequential run."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from distributed import Client, LocalCluster
from prefect import flow

from flows.steps import detect_all, detect_video_task
from tasks.config import load_params
from tasks.layout import Layout
from tests.flows.harness import local_prefect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    with local_prefect(tmp_path_factory.mktemp("results")):
        yield


@flow
def detect_videos_flow(root: Path) -> None:
    layout = Layout(root)
    detect_all(load_params(layout.params), root, layout.detections)


def _project(root: Path, videos: Path, weights: Path, runner: dict) -> Path:
    root.mkdir()
    params = {
        "detect": {"weights": str(weights), "videos": [str(videos)], "interval": 2, "imgsz": 64, "conf": 0.01},
        "crop": {"min_size": 4},
        "runner": runner,
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _task_states(dask_scheduler) -> dict[str, dict[str, int]]:
    """Per task-name prefix, how many tasks this Dask scheduler saw in each state (kept after they finish)."""
    return {name: dict(prefix.state_counts) for name, prefix in dask_scheduler.task_prefixes.items()}


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_dask_cluster_gives_the_outputs_of_the_sequential_run(
    prefect_server, trained_checkpoint: Path, tiny_demo: Path, tmp_path: Path
):
    videos = tmp_path / "videos"
    videos.mkdir()
    source = next((tiny_demo / "videos").glob("*.mp4"))
    for name in ("cam_a", "cam_b", "cam_c"):
        shutil.copyfile(source, videos / f"{name}.mp4")
    (videos / "cam_d.mp4").write_text("not a video")  # a failure on a worker is reported, not raised

    sequential = _project(tmp_path / "sequential", videos, trained_checkpoint, {"task_runner": "threads"})
    detect_videos_flow(sequential)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        runner = {"task_runner": "dask", "dask_address": cluster.scheduler_address}
        distributed = _project(tmp_path / "dask", videos, trained_checkpoint, runner)
        detect_videos_flow(distributed)
        with Client(cluster) as client:  # the scheduler itself says who ran the detection tasks
            ran = client.run_on_scheduler(_task_states)
    # one task per video, cam_d included, finished on a worker; Dask names them after the task's function
    assert ran.get(detect_video_task.fn.__name__, {}).get("memory") == 4, ran

    expected = _digests(sequential / "data")
    assert set(expected) == {f"detections/cam_{x}.csv" for x in "abcd"} | {"detections/summary.json"}
    assert len((sequential / "data/detections/cam_b.csv").read_text().splitlines()) > 1, "nothing detected"
    assert _digests(distributed / "data") == expected
    summary = json.loads((distributed / "data" / "detections" / "summary.json").read_text())
    assert {v["name"]: v["status"] for v in summary["videos"]} == {
        "cam_a": "ok",
        "cam_b": "ok",
        "cam_c": "ok",
        "cam_d": "failed",
    }
