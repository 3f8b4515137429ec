"""People in video with the current detector: stage `detect` and every stage after it, without retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows.steps import run_stages
from tasks.config import load_params
from tasks.layout import Layout
from tasks.lock import project_lock
from tasks.registry import stages_from

__all__ = ["inference", "people_counts"]


def people_counts(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{video: {mean, max, frames}} from the flow report, for the people-counts artifact."""
    return {
        name: {"mean": v["people_per_frame_mean"], "max": v["people_per_frame_max"], "frames": v["sampled_frames"]}
        for name, v in report["videos"].items()
        if v["status"] == "ok"
    }


@flow(name="inference", log_prints=True)
def inference(root: Path = Path("."), overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """People in the configured videos with the current detector; returns the flow report."""
    layout = Layout(Path(root))
    params = load_params(layout.params, overrides)
    with project_lock(layout.root, "prefect flow inference"):
        results = run_stages(stages_from("detect", params), params, layout.root)
    return results["flow_report"]
