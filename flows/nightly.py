"""The `nightly-eval` flow: re-validate the fine-tuned model, re-count people in the videos, compare with the
last good night, alert."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.states import Completed, Failed, State

from flows.steps import detect_all
from tasks.artifacts import publish_nightly
from tasks.config import load_params
from tasks.flow_report import people_per_frame
from tasks.layout import Layout
from tasks.lock import project_lock
from tasks.nightly import NightlyRegression, judge_and_record, revalidate_task, unique_people

__all__ = ["nightly_eval"]


@flow(name="nightly-eval", log_prints=True)
def nightly_eval(root: Path = Path(".")) -> State[Any]:
    """Fails, with a `nightly-alert` artifact, when mAP50, people per frame or unique people regress beyond `nightly`
    tolerances."""
    layout = Layout(Path(root))
    params = load_params(layout.params)
    data_yaml = params.model.data_yaml(layout.demo_data)
    with project_lock(layout.root, "prefect flow nightly-eval"):
        evaluation = revalidate_task(params.val, weights=layout.finetuned_weights, data_yaml=data_yaml)
        detect_all(params, layout.root, layout.nightly_detections)  # beside, not over, the DVC-tracked detections
        counts = people_per_frame(params.detect, layout.nightly_detections)
        evaluation = replace(
            evaluation,
            people_per_frame={video: c["mean"] for video, c in counts.items()},
            unique_people=unique_people(params.track, params.detect, layout.nightly_detections),
        )
        verdict = judge_and_record(layout.nightly_history, evaluation, params.nightly)
    publish_nightly(verdict)
    if verdict.alerts:
        message = "; ".join(alert.message for alert in verdict.alerts)
        # A failed state's data must be an exception: `state.result()` raises it.
        return Failed(message=message, data=NightlyRegression(message))
    return Completed(message=f"mAP50 {verdict.current.map50:.4f}", data=verdict.current.to_dict())
