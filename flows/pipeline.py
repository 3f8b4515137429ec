"""The LightWeight DAG as a Prefect flow of cached tasks: it only sequences the registry's stages."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.logging.handlers import APILogHandler

from flows.inference import people_counts
from flows.steps import run_stages
from tasks.artifacts import publish_pipeline
from tasks.config import knob_overrides, load_params
from tasks.layout import Layout
from tasks.lock import project_lock
from tasks.publish import collect_artifacts, publish_task
from tasks.registry import stages

__all__ = ["pipeline"]

# The steps log progress at INFO; prefect.toml routes the `tasks` logger into flow-run logs.
logging.getLogger("tasks").setLevel(logging.INFO)
# Importing yolov5 re-runs logging.config for its logger, dropping the handlers Prefect gave it as an
# extra logger; give them back so YOLOv5's training and validation output reaches flow-run logs too.
# (Only the API handler: YOLOv5 keeps printing to the console itself.)
for _handler in logging.getLogger("prefect.extra").handlers:
    if isinstance(_handler, APILogHandler) and _handler not in logging.getLogger("yolov5").handlers:
        logging.getLogger("yolov5").addHandler(_handler)


@flow(name="pipeline", log_prints=True)
def pipeline(
    root: Path = Path("."),
    overrides: dict[str, Any] | None = None,
    prune_ratio: float | None = None,
    prune_importance: str | None = None,
    base_epochs: int | None = None,
    finetune_epochs: int | None = None,
    publish: bool = False,
) -> dict[str, Any]:
    """Every stage of dvc.yaml, in order, each a task cached on its declared inputs, params and code.

    `overrides` sets any params.yaml key ({"val.imgsz": 256}); the flat knobs (`-p prune_ratio=0.4` on a
    deployment run) set the common ones and win over `overrides`. `publish` uploads the final artifacts to
    the S3 bucket in `storage:` at the end.
    """
    layout = Layout(Path(root))
    knobs = knob_overrides(
        prune_ratio=prune_ratio,
        prune_importance=prune_importance,
        base_epochs=base_epochs,
        finetune_epochs=finetune_epochs,
    )
    params = load_params(layout.params, {**(overrides or {}), **knobs})
    with project_lock(layout.root, "prefect flow pipeline"):
        results = run_stages(stages(params), params, layout.root)
    publish_pipeline(results["val"], params, people=people_counts(results["flow_report"]), track=results["track"])
    outputs: dict[str, Any] = {"val": results["val"], "flow": results["flow_report"]}
    if publish:
        files, _ = collect_artifacts(layout.root, layout.published)
        outputs["published"] = publish_task(params.storage.with_environment(), files)
    return outputs
