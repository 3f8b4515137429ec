"""Registry stages as Prefect tasks: one task per stage, named after it, cached as DVC caches the stage."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prefect import task, unmapped
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tasks.caching import ItemCachePolicy, StageCachePolicy, fingerprint
from tasks.config import Params, RunnerConfig
from tasks.detect import deployed_model, detect_video, find_videos, load_detector
from tasks.detections import VideoReport, write_summary
from tasks.layout import Layout
from tasks.stage import Stage

__all__ = ["detect_all", "run_stages", "task_runner"]


@dataclass(frozen=True)
class _Done:
    value: Any  # what the stage returned
    outputs: dict[str, Any]  # the contents it left, to tell a cached result from outputs another run replaced

    def replaced(self, on_disk: dict[str, Any]) -> bool:
        """Whether another run (with other params, say) has since replaced the outputs this result describes: a
        cached result must then run again, so that what is on disk is always what the returned result describes."""
        return self.outputs != on_disk


def _outputs(stage: Stage, params: Params, root: Path) -> dict[str, Any]:
    return {out: fingerprint(stage.resolve(out, params, root)) for out in stage.outputs}


def _stage_task(stage: Stage) -> Any:
    def run(params: Params, root: Path) -> _Done:
        value = stage.run(params, root)
        return _Done(value, _outputs(stage, params, root))

    run.__doc__ = stage.run.__doc__
    return task(run, name=stage.name, cache_policy=StageCachePolicy(stage=stage.name))


def _run_stage(stage: Stage, params: Params, root: Path) -> Any:
    """The stage as a cached task; a cached result whose outputs were since replaced runs again."""
    step = _stage_task(stage)
    state = step(params=params, root=root, return_state=True)
    done: _Done = state.result()
    if done.replaced(_outputs(stage, params, root)):
        done = step.with_options(refresh_cache=True)(params=params, root=root)
    return done.value


@task(name="detect", cache_policy=ItemCachePolicy(stage="detect", item="video", output="out_csv"))
def detect_video_task(params: Params, root: Path, video: Path, out_csv: Path) -> _Done:
    """Sampled detection on one video (the unit the flow fans out), on the runtime stage detect deploys."""
    runtime, model = deployed_model(params.detect, root)
    report = detect_video(load_detector(params.detect, model, runtime), params.detect, video, out_csv)
    return _Done(report, {"out_csv": fingerprint(out_csv)})


def task_runner(cfg: RunnerConfig) -> TaskRunner:
    """The task runner the settings ask for: threads here, or a Dask cluster (given, or started locally)."""
    if cfg.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.dask_address:
            return DaskTaskRunner(address=cfg.dask_address)
        cluster = {"n_workers": cfg.dask_workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
        return DaskTaskRunner(cluster_kwargs=cluster)
    return ThreadPoolTaskRunner(max_workers=cfg.threads)


def detect_all(params: Params, root: Path, out_dir: Path | None = None) -> list[VideoReport]:
    """Stage `detect` fanned out: one task per video on the runner `params.runner` selects, then summary.json.

    The runner is chosen here, at run time, so a deployment run and a local run fan out alike.
    """
    out_dir = out_dir or Layout(root).detections
    videos, reports = find_videos(params.detect.videos, root)
    out_dir.mkdir(parents=True, exist_ok=True)
    current = {f"{video.stem}.csv" for video in videos} | {f"{report.name}.csv" for report in reports}
    for stale in out_dir.glob("*.csv"):  # videos no longer configured
        if stale.name not in current:
            stale.unlink()
    arguments = {
        "params": unmapped(params),
        "root": unmapped(root),
        "video": videos,
        "out_csv": [out_dir / f"{video.stem}.csv" for video in videos],
    }
    with task_runner(params.runner) as runner:
        done = [future.result() for future in runner.map(detect_video_task, arguments)]
        # a cached result whose CSV another run has since replaced (other weights, say) runs again, as a stage does
        csvs = arguments["out_csv"]
        replaced = [i for i, item in enumerate(done) if item.replaced({"out_csv": fingerprint(csvs[i])})]
        if replaced:
            refresh = {"params": arguments["params"], "root": arguments["root"]}
            refresh |= {name: [arguments[name][i] for i in replaced] for name in ("video", "out_csv")}
            rerun = runner.map(detect_video_task.with_options(refresh_cache=True), refresh)
            for i, item in zip(replaced, rerun, strict=True):
                done[i] = item.result()
        # a cached report names the video where it was first run; this project's copy is the one meant
        reports.extend(replace(item.value, video=str(v)) for item, v in zip(done, videos, strict=True))
    write_summary(out_dir, reports, root)
    return reports


_FANNED_OUT = {"detect": detect_all}  # stages whose items run as tasks of their own, on the task runner


def run_stages(stages: list[Stage], params: Params, root: Path) -> dict[str, Any]:
    """Run `stages` in order as cached tasks; {stage name: what it returned}."""
    results: dict[str, Any] = {}
    for stage in stages:
        if stage.name in _FANNED_OUT:
            results[stage.name] = _FANNED_OUT[stage.name](params, root)
        else:
            results[stage.name] = _run_stage(stage, params, root)
    return results
