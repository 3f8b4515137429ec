"""The LightWeight DAG as a Prefect flow of cached tasks: it only sequences steps."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.logging.handlers import APILogHandler

from tasks.base import BaseResult, base_task
from tasks.config import load_params
from tasks.demo_data import demo_data_task
from tasks.evaluate import val_task
from tasks.finetune import finetune_task
from tasks.layout import Layout
from tasks.prune import prune_task

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
def pipeline(root: Path = Path("."), overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """demo data -> base -> prune + merge ckpt + rewrite yaml -> finetune -> val (next: detect -> report)."""
    layout = Layout(Path(root))
    params = load_params(layout.params, overrides)
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
    return val_task(params.val, weights, data_yaml=data_yaml, dataset=data_yaml.parent, out=layout.val_outputs)
