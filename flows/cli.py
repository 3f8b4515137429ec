"""`lightweight`: the one command line. dvc.yaml stages call `lightweight run STAGE`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
import typer
import yaml
from typer.core import TyperGroup

from flows.export_cli import export
from tasks.config import ConfigError, load_params
from tasks.errors import LightweightError
from tasks.layout import Layout, PruneOutputs
from tasks.lock import project_lock
from tasks.registry import (
    PROJECT,
    StageError,
    declared_names,
    dvc_differences,
    load_stage,
    stage_names,
    write_dvc_yaml,
)


class _Commands(TyperGroup):
    """Every user error (a LightweightError) ends the command with its message and exit code 2, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LightweightError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True, help=__doc__)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


@app.command()
def run(
    stage: str = typer.Argument(..., help="a stage of dvc.yaml: " + ", ".join(declared_names())),
    root: Path = typer.Option(Path("."), help="project folder holding params.yaml"),
) -> None:
    """Run one pipeline stage (what a dvc.yaml stage calls), without Prefect."""
    _setup_logging()
    declared = load_stage(stage)
    params = load_params(Layout(root).params)  # validated before any work starts
    with project_lock(root, f"lightweight run {stage}"):
        declared.run(params, root)


@app.command()
def dag(
    write: bool = typer.Option(False, "--write", help="rewrite dvc.yaml's stages from the registry"),
    root: Path = typer.Option(PROJECT, help="project folder holding dvc.yaml"),
) -> None:
    """Check that dvc.yaml declares the stages as their modules do (`--write` regenerates it)."""
    path = root / "dvc.yaml"
    if write:
        write_dvc_yaml(path)
        typer.echo(f"{path}: {len(stage_names())} stages written")
        return
    problems = dvc_differences(yaml.safe_load(path.read_text()))
    if problems:
        raise StageError(
            f"{path} disagrees with the stages' modules (`lightweight dag --write` fixes it):\n  "
            + "\n  ".join(problems)
        )
    typer.echo(f"{path}: {len(stage_names())} stages, as their modules declare them")


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
    from tasks.config import PruneConfig, validated
    from tasks.prune import prune_checkpoint

    _setup_logging()
    cfg = validated(
        PruneConfig,
        "options",
        ratio=ratio,
        importance=importance,
        round_to=round_to,
        iterative_steps=steps,
        global_ranking=global_ranking,
        min_channels=min_channels,
    )
    metrics = prune_checkpoint(cfg, weights=checkpoint, out=PruneOutputs.in_folder(out))
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
    params = load_params(Layout(root).params, {"select.max_map50_drop": max_drop} if max_drop is not None else None)
    chosen = select_experiment(
        params.select, root=root, out_weights=root / "models" / "selected.pt", report_dir=root / "reports"
    )
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

    info = describe_checkpoint(checkpoint)
    if as_json:
        typer.echo(json.dumps(info.to_dict(), indent=2))
        return
    typer.echo(f"{info.path}")
    typer.echo(f"  classes    nc={info.nc} {info.names}")
    typer.echo(f"  size       {info.parameters:,} parameters, {info.gflops_640:.2f} GFLOPs at 640")
    typer.echo(
        f"  training   epoch={info.epoch} ema={'yes' if info.has_ema else 'no'} "
        f"optimizer={'yes' if info.has_optimizer else 'no'} date={info.date}"
    )
    typer.echo(f"  yaml       {info.yaml_file}")
    typer.echo(
        "  layers     " + " ".join(f"{layer.index}:{layer.module}={layer.out_channels}" for layer in info.layers)
    )


@app.command()
def params(root: Path = typer.Option(Path("."), help="project folder holding params.yaml")) -> None:
    """Validate params.yaml and print the full, typed parameters."""
    typer.echo(json.dumps(load_params(Layout(root).params).model_dump(mode="json"), indent=2))


@app.command()
def flow(
    root: Path = typer.Option(Path("."), help="project folder holding params.yaml"),
    set_: list[str] = typer.Option([], "--set", "-S", help="override a parameter, e.g. -S base.epochs=5"),
) -> None:
    """Run the whole pipeline as a Prefect flow of cached tasks."""
    from flows.pipeline import pipeline

    overrides = {}
    for item in set_:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    load_params(Layout(root).params, overrides)  # fail fast, before Prefect starts
    pipeline(root=root, overrides=overrides)


@app.command()
def publish(
    root: Path = typer.Option(Path("."), help="project folder holding params.yaml"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be published; no network"),
) -> None:
    """Upload the final artifacts to S3 (storage: in params.yaml; credentials from the AWS chain)."""
    from tasks.publish import collect_artifacts, plan_publish
    from tasks.publish import publish as publish_files

    _setup_logging()
    layout = Layout(root)
    storage = load_params(layout.params).storage.with_environment()
    required = layout.published[0]
    files, missing = collect_artifacts(root, layout.published)
    if required in missing:
        raise ConfigError(f"{root / required} not found: run the pipeline first (dvc repro or lightweight flow)")
    for pattern in missing:
        typer.echo(f"not published (nothing matches): {pattern}", err=True)
    if dry_run:
        for item in plan_publish(storage, files):
            typer.echo(f"would publish {item.name} -> s3://{storage.bucket}/{item.key} sha256={item.sha256}")
        return
    result = publish_files(storage, files)
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

    nightly = load_params(Layout(root).params).nightly  # fail fast, before registering anything
    if not get_current_settings().api.url:
        raise ConfigError(
            "no Prefect server: start `prefect server start` and "
            "`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`"
        )
    _setup_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API poll otherwise
    from flows.deployments import serve_deployments

    serve_deployments(root, nightly, name=name, schedule=schedule)


app.command("export")(export)


def main() -> None:  # pragma: no cover - `python -m flows.cli`
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
