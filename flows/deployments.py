"""The deployments `lightweight serve` registers and runs: `pipeline` on demand, `nightly-eval` on a cron."""

from __future__ import annotations

from pathlib import Path

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from flows.nightly import nightly_eval
from flows.pipeline import pipeline
from tasks.config import NightlyConfig

__all__ = ["DEPLOYMENT_NAME", "build_deployments", "serve_deployments"]

DEPLOYMENT_NAME = "lightweight"  # runs are addressed as pipeline/lightweight and nightly-eval/lightweight


def build_deployments(
    root: Path, nightly: NightlyConfig, name: str = DEPLOYMENT_NAME, schedule: bool = True
) -> list[RunnerDeployment]:
    """Both deployments, bound to the project folder `root` (its params.yaml, its outputs)."""
    # An absolute root as the default parameter: a run works on this folder whatever the runner's cwd.
    parameters = {"root": str(root.resolve())}
    # Module entrypoints (flows.pipeline.pipeline): the installed package is found from any folder.
    common = {"parameters": parameters, "entrypoint_type": EntrypointType.MODULE_PATH, "tags": ["lightweight"]}
    return [
        pipeline.to_deployment(name=name, **common),
        nightly_eval.to_deployment(
            name=name,
            schedules=[Cron(nightly.cron, timezone=nightly.timezone)],
            paused=not schedule,
            **common,
        ),
    ]


def serve_deployments(root: Path, nightly: NightlyConfig, name: str = DEPLOYMENT_NAME, schedule: bool = True) -> None:
    """Register the deployments and execute their runs in subprocesses until interrupted."""
    # One run at a time: pipeline and nightly-eval read and write the same models/ and metrics/.
    serve(*build_deployments(root, nightly, name, schedule), limit=1)
