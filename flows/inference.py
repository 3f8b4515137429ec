"""Inference on video as a Prefect flow: sampled detection fanned out per video, then crops (next: classify, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tasks.config import Params, RunnerConfig, load_params
from tasks.crop import crop_task
from tasks.detect import VideoReport, detect_video_task, find_videos, write_summary
from tasks.layout import Layout

__all__ = ["detect_all", "inference", "run_inference", "task_runner"]


def task_runner(cfg: RunnerConfig) -> TaskRunner:
    """The task runner the settings ask for: threads here, or a Dask cluster (given, or started locally)."""
    if cfg.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.dask_address:
            return DaskTaskRunner(address=cfg.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.dask_workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})  # fmt: skip
    return ThreadPoolTaskRunner(max_workers=cfg.threads)


def detect_all(params: Params, root: Path, out_dir: Path) -> list[VideoReport]:
    """One detect task per video on the flow's task runner; summary.json once all are back."""
    videos, reports = find_videos(params.detect.videos, root)
    weights = params.detect.weights_path(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    current = {f"{video.stem}.csv" for video in videos} | {f"{report.name}.csv" for report in reports}
    for stale in out_dir.glob("*.csv"):  # videos no longer configured
        if stale.name not in current:
            stale.unlink()
    futures = detect_video_task.map(unmapped(params.detect), unmapped(weights), videos,
                                    [out_dir / f"{video.stem}.csv" for video in videos])  # fmt: skip
    reports.extend(future.result() for future in futures)
    write_summary(out_dir, reports)
    return reports


@flow(name="inference", log_prints=True)
def inference(root: Path = Path("."), overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """sampled detect (one task per video) -> crop."""
    layout = Layout(Path(root))
    params = load_params(layout.params, overrides)
    reports = detect_all(params, layout.root, layout.detections)
    crops_index = crop_task(params.crop, layout.root, layout.detections, _videos_key(params, layout.root),
                            layout.crops_dir)  # fmt: skip
    return {"videos": [report.name for report in reports], "crops_index": crops_index}


def _videos_key(params: Params, root: Path) -> list[Path]:
    return find_videos(params.detect.videos, root)[0]


def run_inference(root: Path = Path("."), overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The inference flow on the task runner params.yaml's `runner` section selects."""
    params = load_params(Layout(Path(root)).params, overrides)
    return inference.with_options(task_runner=task_runner(params.runner))(root=root, overrides=overrides)
