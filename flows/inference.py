"""People in video as Prefect tasks: sampled detection fanned out per video, crops, classification, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tasks.classifier import classifier_task
from tasks.classify import classify_task
from tasks.config import Params, RunnerConfig, load_params
from tasks.cost import macs_task
from tasks.crop import crop_task
from tasks.detect import VideoReport, detect_video_task, find_videos, write_summary
from tasks.layout import Layout
from tasks.report import flow_report_task

__all__ = ["detect_all", "inference", "people_counts", "task_runner", "video_steps"]


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
    """One detect task per video on the task runner `params.runner` selects; summary.json once all are back.

    The runner is chosen here, at run time, so a deployment run and a local run fan out alike.
    """
    videos, reports = find_videos(params.detect.videos, root)
    out_dir.mkdir(parents=True, exist_ok=True)
    current = {f"{video.stem}.csv" for video in videos} | {f"{report.name}.csv" for report in reports}
    for stale in out_dir.glob("*.csv"):  # videos no longer configured
        if stale.name not in current:
            stale.unlink()
    arguments = {"cfg": unmapped(params.detect), "weights": unmapped(params.detect.weights_path(root)),
                 "video": videos, "out_csv": [out_dir / f"{video.stem}.csv" for video in videos]}  # fmt: skip
    with task_runner(params.runner) as runner:
        reports.extend(future.result() for future in runner.map(detect_video_task, arguments))
    write_summary(out_dir, reports)
    return reports


def people_counts(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{video: {mean, max, frames}} from the flow report, for the people-counts artifact."""
    return {name: {"mean": v["people_per_frame_mean"], "max": v["people_per_frame_max"], "frames": v["sampled_frames"]}
            for name, v in report["videos"].items() if v["status"] == "ok"}  # fmt: skip


def video_steps(params: Params, layout: Layout) -> dict[str, Any]:
    """detect (per video) -> crop -> classifier -> classify -> flow_report -> macs; returns the flow report."""
    detect_all(params, layout.root, layout.detections)
    videos = find_videos(params.detect.videos, layout.root)[0]
    crops_index = crop_task(params.crop, layout.root, layout.detections, videos, layout.crops_dir)
    classifier = classifier_task(params.classify, layout.demo_data, params.classify.weights_path(),
                                 layout.classifier_weights, layout.classifier_metrics)  # fmt: skip
    predictions = classify_task(params.classify, classifier.weights, layout.crops_dir, crops_index,
                                layout.predictions)  # fmt: skip
    report = flow_report_task(params.report, params.detect, layout.root, layout.detections, crops_index, predictions,
                              ground_truth=[video.with_suffix(".csv") for video in videos],
                              out=layout.flow_outputs)  # fmt: skip
    detectors = {"detect": params.detect.weights_path(layout.root), "base": layout.base_weights}
    macs_task(params.detect, detectors, classifier.weights, layout.detections, crops_index, layout.macs)
    return report


@flow(name="inference", log_prints=True)
def inference(root: Path = Path("."), overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """People in the configured videos with the current detector, without retraining anything."""
    layout = Layout(Path(root))
    return video_steps(load_params(layout.params, overrides), layout)
