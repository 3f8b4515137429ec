"""Stage `finetune`: YOLOv5's own training on the pruned checkpoint and its yaml, architecture kept."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import yaml

from tasks.atomic import atomic_file
from tasks.config import FinetuneConfig, Params
from tasks.dataset import resolved_dataset_yaml
from tasks.errors import LightweightError
from tasks.layout import Layout
from tasks.stage import Stage
from tasks.yolo import detection_model, load_checkpoint, train
from tasks.yolo.architecture import build_model, same_architecture

__all__ = ["FinetuneError", "finetune"]

log = logging.getLogger(__name__)


class FinetuneError(LightweightError, ValueError):
    """Inputs that would not fine-tune the pruned architecture."""


def _parameters(weights: Path) -> int:
    return sum(p.numel() for p in detection_model(load_checkpoint(weights), weights).parameters())


def finetune(cfg: FinetuneConfig, *, weights: Path, model_yaml: Path, data_yaml: Path, out_weights: Path) -> Path:
    """Train the pruned checkpoint with its rewritten yaml; fail if training would change the architecture."""
    pruned = detection_model(load_checkpoint(weights), weights)
    if not model_yaml.is_file():
        raise FinetuneError(f"{model_yaml}: model yaml not found")
    rebuilt = build_model(yaml.safe_load(model_yaml.read_text()), nc=int(pruned.model[-1].nc))
    if not same_architecture(pruned, rebuilt):
        raise FinetuneError(
            f"{model_yaml} does not rebuild {weights}: YOLOv5's train.py would silently train another network"
        )
    with tempfile.TemporaryDirectory(prefix="lightweight-finetune-") as scratch:
        run_dir = Path(scratch)
        data = resolved_dataset_yaml(data_yaml, run_dir)  # checks the val split before training starts
        log.info("fine-tuning %s with %s for %d epochs", weights, model_yaml, cfg.epochs)
        best = train(
            data=data,
            cfg=str(model_yaml),
            weights=str(weights),
            run_dir=run_dir,
            **cfg.train_options(),
        )
        expected, got = sum(p.numel() for p in pruned.parameters()), _parameters(best)
        if got != expected:
            raise RuntimeError(f"training changed the architecture: {expected} parameters became {got}")
        with atomic_file(out_weights) as tmp:
            shutil.copyfile(best, tmp)
    log.info("fine-tuned %s (%d parameters)", out_weights, expected)
    return out_weights


def _run(params: Params, root: Path) -> Path:
    layout = Layout(root)
    pruned = layout.prune_outputs
    return finetune(
        params.finetune,
        weights=pruned.weights,
        model_yaml=pruned.yaml,
        data_yaml=params.model.data_yaml(layout.demo_data),
        out_weights=layout.finetuned_weights,
    )


STAGE = Stage(
    name="finetune",
    run=_run,
    deps=("models/pruned.pt", "models/pruned.yaml", "data/demo"),
    outs=("models/finetuned.pt",),
    params=("finetune", "model"),
)
