"""`lightweight`: the one command line. dvc.yaml stages call `lightweight run STAGE`."""

from __future__ import annotations

import json
import logging
import sys
from enum import StrEnum
from pathlib import Path

import typer

from tasks.config import ConfigError, load_params
from tasks.dataset import DatasetError
from tasks.layout import Layout, PruneOutputs
from tasks.yolo import CheckpointError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _user_errors() -> tuple[type[Exception], ...]:
    from tasks.classifier_model import ClassifierError
    from tasks.crop import CropError
    from tasks.detect import DetectError
    from tasks.finetune import FinetuneError
    from tasks.prune import PruneError

    return (ConfigError, CheckpointError, DatasetError, PruneError, FinetuneError, DetectError, CropError,
            ClassifierError)  # fmt: skip


class Stage(StrEnum):
    demo_data = "demo_data"
    base = "base"
    prune = "prune"
    finetune = "finetune"
    val = "val"
    detect = "detect"
    crop = "crop"
    classifier = "classifier"
    classify = "classify"
    flow_report = "flow_report"
    macs = "macs"


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _fail(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


@app.command()
def run(
    stage: Stage,
    root: Path = typer.Option(Path("."), help="project folder holding params.yaml"),
) -> None:
    """Run one pipeline stage (what a dvc.yaml stage calls), without Prefect."""
    _setup_logging()
    layout = Layout(root)
    try:
        params = load_params(layout.params)  # validated before any work starts
        if stage is Stage.demo_data:
            from tasks.demo_data import generate_demo_data

            generate_demo_data(params.demo, layout.demo_data)
        elif stage is Stage.base:
            from tasks.base import prepare_base_model

            data_yaml = params.model.data_yaml(layout.demo_data)
            prepare_base_model(
                params.base, data_yaml, layout.base_weights, layout.base_metrics, params.model.weights_path()
            )
        elif stage is Stage.prune:
            from tasks.prune import prune_checkpoint

            data_yaml = params.model.data_yaml(layout.demo_data)
            prune_checkpoint(params.prune, layout.base_weights, layout.prune_outputs, params.step_training(), data_yaml)
        elif stage is Stage.finetune:
            from tasks.finetune import finetune

            pruned = layout.prune_outputs
            data_yaml = params.model.data_yaml(layout.demo_data)
            finetune(params.finetune, pruned.weights, pruned.yaml, data_yaml, layout.finetuned_weights)
        elif stage is Stage.val:
            from tasks.evaluate import compare_models

            weights = {
                "base": layout.base_weights,
                "pruned": layout.prune_outputs.weights,
                "finetuned": layout.finetuned_weights,
            }
            compare_models(params.val, weights, params.model.data_yaml(layout.demo_data), layout.val_outputs)
        elif stage is Stage.detect:
            from tasks.detect import detect_videos

            detect_videos(params.detect, root, layout.detections)
        elif stage is Stage.crop:
            from tasks.crop import crop_detections

            crop_detections(params.crop, root, layout.detections, layout.crops_dir)
        elif stage is Stage.flow_report:
            from tasks.report import flow_report

            flow_report(params.report, params.detect, root, layout.detections, layout.crops_index,
                        layout.predictions, layout.flow_outputs)  # fmt: skip
        elif stage is Stage.classifier:
            from tasks.classifier import prepare_classifier

            prepare_classifier(params.classify, layout.demo_data, layout.classifier_weights,
                               layout.classifier_metrics, params.classify.weights_path())  # fmt: skip
        elif stage is Stage.classify:
            from tasks.classify import classify_crops

            classify_crops(params.classify, layout.classifier_weights, layout.crops_dir, layout.crops_index,
                           layout.predictions)  # fmt: skip
        elif stage is Stage.macs:
            from tasks.cost import compute_costs

            detectors = {"detect": params.detect.weights_path(root), "base": layout.base_weights}
            compute_costs(params.detect, detectors, layout.classifier_weights, layout.detections,
                          layout.crops_index, layout.macs)  # fmt: skip
    except _user_errors() as error:
        _fail(error)


@app.command()
def prune(
    checkpoint: Path,
    out: Path = typer.Option(..., "--out", help="folder for pruned.pt, pruned.yaml, prune.json and plots"),
    ratio: float = typer.Option(0.5, help="share of channels removed, in (0, 1)"),
    importance: str = typer.Option("l2", help="l2 | l1 | bn_scale | random"),
    round_to: int = typer.Option(8, help="widths are kept in multiples of this (a multiple of 8)"),
    steps: int = typer.Option(1, help="iterative pruning steps"),
    global_ranking: bool = typer.Option(False, "--global", help="rank channels across layers"),
    min_channels: int = typer.Option(8, help="no layer pruned below this many channels (0: error instead)"),
) -> None:
    """Prune any YOLOv5 detection checkpoint outside the pipeline: prune, merge ckpt, rewrite yaml."""
    from pydantic import ValidationError

    from tasks.config import PruneConfig
    from tasks.prune import prune_checkpoint

    _setup_logging()
    try:
        cfg = PruneConfig(ratio=ratio, importance=importance, round_to=round_to, iterative_steps=steps,
                          global_ranking=global_ranking, min_channels=min_channels)  # fmt: skip
    except ValidationError as error:
        _fail(ConfigError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())))
    try:
        metrics = prune_checkpoint(cfg, checkpoint, PruneOutputs.in_folder(out))
    except _user_errors() as error:
        _fail(error)
    typer.echo(
        f"{out / 'pruned.pt'}: parameters {metrics['parameters_before']:,} -> {metrics['parameters_after']:,} "
        f"({metrics['parameters_reduction']}x), GFLOPs {metrics['gflops_before']} -> {metrics['gflops_after']} "
        f"({metrics['gflops_reduction']}x)"
    )


@app.command()
def select(
    root: Path = typer.Option(Path("."), help="project folder holding params.yaml"),
    max_drop: float | None = typer.Option(None, help="override select.max_map50_drop"),
) -> None:
    """Compare every DVC experiment, plot the Pareto front, write models/selected.pt."""
    from tasks.select import select_experiment

    _setup_logging()
    try:
        params = load_params(Layout(root).params, {"select.max_map50_drop": max_drop} if max_drop is not None else None)
    except ConfigError as error:
        _fail(error)
    chosen = select_experiment(params.select, root, root / "models" / "selected.pt", root / "reports")
    if chosen is None:
        _fail(ValueError(f"no experiment within a mAP50 drop of {params.select.max_map50_drop}"))
    typer.echo(
        f"selected {chosen.name}: prune.ratio={chosen.ratio} mAP50={chosen.map50:.3f} "
        f"(drop {chosen.map50_drop:.3f}) latency={chosen.latency_ms:.1f} ms -> models/selected.pt"
    )


@app.command()
def inspect(
    checkpoint: Path,
    as_json: bool = typer.Option(False, "--json", help="print machine-readable JSON"),
) -> None:
    """Describe a YOLOv5 checkpoint: classes, size, GFLOPs, layer widths, training state."""
    from tasks.yolo import describe_checkpoint

    try:
        info = describe_checkpoint(checkpoint)
    except _user_errors() as error:
        _fail(error)
    if as_json:
        typer.echo(json.dumps(info.to_dict(), indent=2))
        return
    typer.echo(f"{info.path}")
    typer.echo(f"  classes    nc={info.nc} {info.names}")
    typer.echo(f"  size       {info.parameters:,} parameters, {info.gflops_640:.2f} GFLOPs at 640")
    typer.echo(f"  training   epoch={info.epoch} ema={'yes' if info.has_ema else 'no'} "
               f"optimizer={'yes' if info.has_optimizer else 'no'} date={info.date}")  # fmt: skip
    typer.echo(f"  yaml       {info.yaml_file}")
    typer.echo(
        "  layers     " + " ".join(f"{layer.index}:{layer.module}={layer.out_channels}" for layer in info.layers)
    )


@app.command()
def params(root: Path = typer.Option(Path("."), help="project folder holding params.yaml")) -> None:
    """Validate params.yaml and print the full, typed parameters."""
    try:
        typer.echo(json.dumps(load_params(Layout(root).params).model_dump(mode="json"), indent=2))
    except ConfigError as error:
        _fail(error)


@app.command()
def flow(
    root: Path = typer.Option(Path("."), help="project folder holding params.yaml"),
    set_: list[str] = typer.Option([], "--set", "-S", help="override a parameter, e.g. -S base.epochs=5"),
) -> None:
    """Run the whole pipeline as a Prefect flow of cached tasks."""
    import yaml

    from flows.pipeline import pipeline

    overrides = {}
    for item in set_:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(ConfigError(f"--set {item!r}: expected KEY=VALUE"))
        overrides[key] = yaml.safe_load(value)
    try:
        load_params(Layout(root).params, overrides)  # fail fast, before Prefect starts
    except ConfigError as error:
        _fail(error)
    pipeline(root=root, overrides=overrides)


@app.command()
def publish(
    root: Path = typer.Option(Path("."), help="project folder holding params.yaml"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be published; no network"),
) -> None:
    """Upload the final artifacts to S3 (storage: in params.yaml; credentials from the AWS chain)."""
    from tasks.publish import collect_artifacts, plan_publish
    from tasks.publish import publish as publish_files
    from tasks.storage import StorageError

    _setup_logging()
    layout = Layout(root)
    try:
        storage = load_params(layout.params).storage.with_environment()
    except ConfigError as error:
        _fail(error)
    required = layout.published[0]
    files, missing = collect_artifacts(root, layout.published)
    if required in missing:
        _fail(ConfigError(f"{root / required} not found: run the pipeline first (dvc repro or lightweight flow)"))
    for pattern in missing:
        typer.echo(f"not published (nothing matches): {pattern}", err=True)
    try:
        if dry_run:
            for item in plan_publish(storage, files):
                typer.echo(f"would publish {item.name} -> s3://{storage.bucket}/{item.key} sha256={item.sha256}")
            return
        result = publish_files(storage, files)
    except StorageError as error:
        _fail(error)
    typer.echo(
        f"published {len(files)} files to s3://{result.bucket}/{result.manifest_key.rsplit('/', 1)[0]}/ "
        f"at {result.endpoint}: {len(result.uploaded)} uploaded, {len(result.skipped)} already there"
    )


@app.command()
def serve(
    root: Path = typer.Option(Path("."), help="project folder holding params.yaml; runs read and write there"),
    name: str = typer.Option("lightweight", help="deployment name: runs are pipeline/NAME and nightly-eval/NAME"),
    schedule: bool = typer.Option(True, "--schedule/--no-schedule", help="--no-schedule: nightly-eval cron paused"),
) -> None:
    """Serve the `pipeline` and `nightly-eval` deployments to a Prefect server, running their flow runs here."""
    from prefect.settings import get_current_settings

    try:
        nightly = load_params(Layout(root).params).nightly  # fail fast, before registering anything
    except ConfigError as error:
        _fail(error)
    if not get_current_settings().api.url:
        _fail(ValueError("no Prefect server: start `prefect server start` and "
                         "`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`"))  # fmt: skip
    _setup_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API poll otherwise
    from flows.deployments import serve_deployments

    serve_deployments(root, nightly, name=name, schedule=schedule)


def main() -> None:  # pragma: no cover - `python -m flows.cli`
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
