"""The LightWeight DAG as a Prefect flow of cached tasks: it only sequences steps."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.logging.handlers import APILogHandler

from flows.inference import people_counts, video_steps
from tasks.artifacts import publish_pipeline
from tasks.base import BaseResult, base_task
from tasks.config import knob_overrides, load_params
from tasks.demo_data import demo_data_task
from tasks.evaluate import val_task
from tasks.finetune import finetune_task
from tasks.layout import Layout
from tasks.prune import prune_task
from tasks.publish import collect_artifacts, publish_task

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
    """demo data -> base -> prune + merge ckpt + rewrite yaml -> finetune -> val -> people in video.

    `overrides` sets any params.yaml key ({"val.imgsz": 256}); the flat knobs (`-p prune_ratio=0.4` on a
    deployment run) set the common ones and win over `overrides`. `publish` uploads the final artifacts to
    the S3 bucket in `storage:` at the end.
    """
    layout = Layout(Path(root))
    knobs = knob_overrides(prune_ratio=prune_ratio, prune_importance=prune_importance, base_epochs=base_epochs,
                           finetune_epochs=finetune_epochs)  # fmt: skip
    params = load_params(layout.params, {**(overrides or {}), **knobs})
    demo = demo_data_task(params.demo, out_dir=layout.demo_data)
    data_yaml = params.model.data_yaml(demo)
    base: BaseResult = base_task(
        params.base,
        data_yaml=data_yaml,
        dataset=data_yaml.parent,
        weights=params.model.weights_path(),
        out_weights=layout.base_weights,
        out_metrics=layout.base_metrics,
    )
    pruned = prune_task(
        params.prune,
        weights=base.weights,
        out=layout.prune_outputs,
        retrain=params.step_training(),  # epochs = finetune.epochs_per_step: finetune.epochs does not key it
        data_yaml=data_yaml,
        dataset=data_yaml.parent,
    )
    finetuned = finetune_task(
        params.finetune,
        weights=pruned.weights,
        model_yaml=pruned.yaml,
        data_yaml=data_yaml,
        dataset=data_yaml.parent,
        out_weights=layout.finetuned_weights,
    )
    weights = {"base": base.weights, "pruned": pruned.weights, "finetuned": finetuned}
    results = val_task(params.val, weights, data_yaml=data_yaml, dataset=data_yaml.parent, out=layout.val_outputs)
    report = video_steps(params, layout)
    publish_pipeline(results, params, people=people_counts(report))
    outputs: dict[str, Any] = {"val": results, "flow": report}
    if publish:
        files, _ = collect_artifacts(layout.root, layout.published)
        outputs["published"] = publish_task(params.storage.with_environment(), files)
    return outputs
