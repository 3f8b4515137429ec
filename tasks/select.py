"""Choosing the pruning ratio from evidence: every DVC experiment's val metrics, a Pareto plot, a pick.

Run after `dvc exp run --run-all`; candidates are the workspace and each experiment whose `val`
stage finished. The pick is the fastest fine-tuned model whose mAP50 drop from base is within
`select.max_map50_drop`; its checkpoint is read from the DVC cache and written as models/selected.pt.
"""

from __future__ import annotations

import csv
import json
import logging
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dvc.api
from matplotlib.figure import Figure

from tasks.atomic import atomic_file, write_png
from tasks.config import SelectConfig
from tasks.errors import LightweightError

__all__ = [
    "Candidate",
    "SelectError",
    "choose",
    "collect_candidates",
    "select_experiment",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    name: str  # experiment name, or "workspace"
    rev: str | None  # git revision DVC can read outputs from (None: the workspace)
    ratio: float
    base_map50: float
    map50: float  # fine-tuned
    latency_ms: float
    gflops_640: float

    @property
    def map50_drop(self) -> float:
        return self.base_map50 - self.map50


def _candidate(name: str, rev: str | None, data: dict[str, Any]) -> Candidate | None:
    try:
        ratio = data["params"]["params.yaml"]["data"]["prune"]["ratio"]
        val = data["metrics"]["metrics/val.json"]["data"]
        tuned = val["finetuned"]
        return Candidate(
            name, rev, ratio, val["base"]["map50"], tuned["map50"], tuned["latency_ms"], tuned["gflops_640"]
        )
    except (KeyError, TypeError):
        return None  # an experiment that failed or has not reached `val`


def collect_candidates(root: Path) -> list[Candidate]:
    """The workspace and every experiment DVC knows, with their val metrics."""
    command = ["dvc", "exp", "show", "--json", "--no-fetch"]
    shown = json.loads(subprocess.run(command, cwd=root, capture_output=True, text=True, check=True).stdout)
    candidates = []
    for commit in shown:
        if commit.get("rev") == "workspace":
            candidates.append(_candidate("workspace", None, commit.get("data") or {}))
        for experiment in commit.get("experiments") or []:
            for revision in experiment.get("revs", []):
                name = revision.get("name") or revision["rev"]
                candidates.append(_candidate(name, revision["rev"], revision["data"]))
    return [c for c in candidates if c is not None]


def choose(candidates: list[Candidate], max_map50_drop: float) -> Candidate | None:
    """The fastest candidate whose mAP50 drop from base is within `max_map50_drop`."""
    allowed = [c for c in candidates if c.map50_drop <= max_map50_drop]
    return min(allowed, key=lambda c: c.latency_ms, default=None)


def _pareto_plot(candidates: list[Candidate], chosen: Candidate | None, target: Path) -> None:
    figure = Figure(figsize=(10, 4))
    for axis, key, label in zip(
        figure.subplots(1, 2), ("latency_ms", "gflops_640"), ("CPU latency ms", "GFLOPs"), strict=True
    ):
        axis.scatter([getattr(c, key) for c in candidates], [c.map50 for c in candidates])
        for c in candidates:
            axis.annotate(f"{c.ratio}", (getattr(c, key), c.map50), fontsize=8)
        if chosen is not None:
            axis.scatter([getattr(chosen, key)], [chosen.map50], s=120, facecolors="none", edgecolors="red")
        axis.set(xlabel=label, ylabel="fine-tuned mAP50", title=f"mAP50 vs {label} (labels: prune ratio)")
    figure.tight_layout()
    write_png(figure, target)


class SelectError(LightweightError):
    """No experiment meets the accuracy budget."""


def select_experiment(cfg: SelectConfig, *, root: Path, out_weights: Path, report_dir: Path) -> Candidate:
    """Write the Pareto plot and candidate table; copy the chosen fine-tuned checkpoint to `out_weights`."""
    candidates = collect_candidates(root)
    chosen = choose(candidates, cfg.max_map50_drop)
    with atomic_file(report_dir / "candidates.csv") as tmp, tmp.open("w", newline="") as handle:
        fields = [*asdict(candidates[0]), "map50_drop", "selected"] if candidates else ["name"]
        rows = csv.DictWriter(handle, fieldnames=fields)
        rows.writeheader()
        for c in candidates:
            rows.writerow({**asdict(c), "map50_drop": round(c.map50_drop, 4), "selected": c == chosen})
    if candidates:
        _pareto_plot(candidates, chosen, report_dir / "pareto.png")
    if chosen is None:
        raise SelectError(
            f"no experiment within a mAP50 drop of {cfg.max_map50_drop} (of {len(candidates)}; "
            f"see {report_dir / 'candidates.csv'})"
        )
    with dvc.api.open("models/finetuned.pt", repo=str(root), rev=chosen.rev, mode="rb") as source:
        data = source.read()
    with atomic_file(out_weights) as tmp:
        tmp.write_bytes(data)
    log.info(
        "selected %s (ratio %s): mAP50 %.3f (drop %.3f), %.1f ms",
        *(chosen.name, chosen.ratio, chosen.map50, chosen.map50_drop, chosen.latency_ms),
    )
    return chosen
