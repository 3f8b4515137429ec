"""The approach users try first, next to ours, at the same GFLOPs and the same fine-tune epochs:

  halved yaml: halve `width_multiple` in the model yaml and run YOLOv5's train.py with the original
               weights (train.py transfers only the few tensors whose shapes still match);
  pruned:      magnitude pruning of the trained model (models/pruned.pt) + the same fine-tuning.

Prints both mAP50s and CPU latencies (batch 1, min of N, same process and input).

    .venv/bin/python benchmarks/halved_yaml_baseline.py            # uses params.yaml and models/*.pt
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch
import yaml

from tasks.config import load_params
from tasks.dataset import resolved_dataset_yaml
from tasks.finetune import finetune
from tasks.layout import Layout
from tasks.timing import min_latencies
from tasks.yolo import count_gflops, detection_model, load_checkpoint, train, validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--epochs", type=int, help="fine-tune epochs for both (default: finetune.epochs)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    layout = Layout(args.root)
    params = load_params(layout.params)
    epochs = args.epochs or params.finetune.epochs
    tune = params.finetune.model_copy(update={"epochs": epochs})
    data_yaml = params.model.data_yaml(layout.demo_data)
    base = detection_model(load_checkpoint(layout.base_weights))
    pruned = layout.prune_outputs

    with tempfile.TemporaryDirectory(prefix="halved-baseline-") as scratch:
        run_dir = Path(scratch)
        halved_yaml = copy.deepcopy(base.yaml)
        halved_yaml["width_multiple"] = base.yaml["width_multiple"] / 2
        halved_file = run_dir / "halved.yaml"
        halved_file.write_text(yaml.safe_dump(halved_yaml, sort_keys=False))
        data = resolved_dataset_yaml(data_yaml, run_dir)
        halved_best = train(
            data=data,
            cfg=str(halved_file),
            weights=str(layout.base_weights),
            run_dir=run_dir / "halved",
            epochs=epochs,
            imgsz=tune.imgsz,
            batch=tune.batch,
            workers=tune.workers,
            patience=tune.patience,
            seed=tune.seed,
            hyp=tune.hyp,
        )
        ours = finetune(
            tune,
            weights=pruned.weights,
            model_yaml=pruned.yaml,
            data_yaml=data_yaml,
            out_weights=run_dir / "finetuned.pt",
        )
        candidates = {"halved yaml + retrain": halved_best, "pruned + fine-tune": ours}
        scores = {
            name: validate(
                weights=path,
                data=data,
                imgsz=params.val.imgsz,
                batch=params.val.batch,
                workers=params.val.workers,
                run_dir=run_dir / "val",
            )
            for name, path in candidates.items()
        }
        models = {name: detection_model(load_checkpoint(path)) for name, path in candidates.items()}
    fused = {name: copy.deepcopy(m).fuse().eval() for name, m in models.items()}
    image = torch.rand(1, 3, params.val.imgsz, params.val.imgsz, generator=torch.Generator().manual_seed(0))
    latency = min_latencies(fused, image, args.repeats)
    print(f"{epochs} fine-tune epochs each, val at {params.val.imgsz}px, latency batch 1 min of {args.repeats}")
    print(f"{'approach':<24}{'params':>10}{'GFLOPs':>8}{'mAP50':>8}{'mAP50-95':>10}{'ms':>8}")
    for name, model in models.items():
        s = scores[name]
        params_count = sum(p.numel() for p in model.parameters())
        print(
            f"{name:<24}{params_count:>10,}{count_gflops(model):>8.2f}{s.map50:>8.3f}{s.map50_95:>10.3f}"
            f"{latency[name] * 1e3:>8.1f}"
        )


if __name__ == "__main__":
    main()
