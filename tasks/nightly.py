"""Nightly evaluation: re-validate the fine-tuned model and compare it with the last passing evaluation."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.atomic import write_json
from tasks.config import DetectConfig, NightlyConfig, TrackConfig, ValConfig
from tasks.dataset import resolved_dataset_yaml
from tasks.detections import read_summary
from tasks.digest import sha256_file
from tasks.errors import LightweightError
from tasks.frames import sampled_indices
from tasks.track import track_video
from tasks.yolo import validate

__all__ = [
    "Alert",
    "Evaluation",
    "NightlyError",
    "NightlyRegression",
    "Verdict",
    "compare_evaluations",
    "count_shift",
    "judge_and_record",
    "load_history",
    "revalidate",
    "revalidate_task",
    "unique_people",
]

log = logging.getLogger(__name__)

_EPSILON = 1e-9  # a drop exactly at the limit is allowed, whatever the float rounding


class NightlyError(LightweightError, ValueError):
    """A nightly evaluation that cannot run: no model yet, or an unreadable history."""


class NightlyRegression(Exception):
    """Raised by a failed nightly run's result: what regressed beyond its tolerance."""


@dataclass(frozen=True)
class Evaluation:
    """One night's numbers for the fine-tuned model."""

    map50: float
    people_per_frame: dict[str, float] = field(default_factory=dict)  # video -> mean people per sampled frame
    map50_95: float = 0.0
    model_sha256: str = ""  # which checkpoint was evaluated: a changed model explains a changed score
    evaluated_at: str = ""  # ISO 8601, UTC
    passed: bool = True  # False when it raised an alert; such runs are never the baseline
    unique_people: dict[str, int] = field(default_factory=dict)  # video -> distinct people tracked (ByteTrack)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(**data)


@dataclass(frozen=True)
class Alert:
    """One regression beyond its tolerance."""

    metric: str  # "map50", "people_per_frame/<video>" or "unique_people/<video>"
    previous: float
    current: float
    change: float  # mAP50: absolute drop; people: relative shift
    limit: float

    @property
    def message(self) -> str:
        if self.metric == "map50":
            return (
                f"mAP50 fell from {self.previous:.4f} to {self.current:.4f} (drop {self.change:.4f} > "
                f"nightly.max_map50_drop {self.limit})"
            )
        digits = "g" if self.metric.startswith("unique_people/") else ".2f"  # people, or people per frame
        return (
            f"{self.metric} moved from {self.previous:{digits}} to {self.current:{digits}} "
            f"(shift {self.change:.0%} > nightly.max_count_shift {self.limit:.0%})"
        )


@dataclass(frozen=True)
class Verdict:
    """Tonight's evaluation, the one it was compared with, and what regressed."""

    current: Evaluation
    previous: Evaluation | None
    alerts: list[Alert]

    @property
    def passed(self) -> bool:
        return not self.alerts


def count_shift(previous: float, current: float) -> float:
    """Relative change of a mean count; below one person per frame the change is taken as absolute."""
    # Relative to near-empty videos, 0.1 -> 0.3 people would read as +200%: a floor of 1 keeps that calm.
    return abs(current - previous) / max(previous, 1.0)


def compare_evaluations(previous: Evaluation | None, current: Evaluation, cfg: NightlyConfig) -> list[Alert]:
    """The regressions of `current` against `previous` beyond the tolerances; none on a first run."""
    if previous is None:
        return []
    alerts = []
    drop = previous.map50 - current.map50
    if drop > cfg.max_map50_drop + _EPSILON:
        alerts.append(Alert("map50", previous.map50, current.map50, round(drop, 6), cfg.max_map50_drop))
    # Only videos seen both nights compare; a video added or removed from the config is not a regression. Nor is a
    # history from before unique people were counted: those nights have none to compare with.
    for name in ("people_per_frame", "unique_people"):
        was, tonight = getattr(previous, name), getattr(current, name)
        for video in sorted(was.keys() & tonight.keys()):
            shift = count_shift(was[video], tonight[video])
            if shift > cfg.max_count_shift + _EPSILON:
                alerts.append(
                    Alert(f"{name}/{video}", was[video], tonight[video], round(shift, 6), cfg.max_count_shift)
                )
    return alerts


def unique_people(track: TrackConfig, detect: DetectConfig, detections_dir: Path) -> dict[str, int]:
    """{video: distinct people} as the track stage follows them through the sampled detections in `detections_dir`.

    The tracks go to a scratch folder: only their number is kept.
    """
    counts = {}
    with tempfile.TemporaryDirectory(prefix="lightweight-nightly-tracks-") as scratch:
        for report in (r for r in read_summary(detections_dir) if r.status == "ok"):
            summary = track_video(
                track,
                detections_csv=detections_dir / f"{report.name}.csv",
                fps=report.fps,
                interval=detect.interval,
                width=report.width,
                height=report.height,
                out_csv=Path(scratch) / f"{report.name}.csv",
                sampled_frames=list(sampled_indices(report.frames_read, detect.interval, detect.start, detect.end)),
                name=report.name,
            )
            counts[report.name] = summary.tracks
    return counts


def load_history(path: Path) -> list[Evaluation]:
    """Every recorded evaluation, oldest first; an absent file is an empty history."""
    if not path.exists():
        return []
    try:
        return [Evaluation.from_dict(item) for item in json.loads(path.read_text())]
    except (json.JSONDecodeError, TypeError) as error:
        raise NightlyError(f"{path}: not a nightly history ({error}); move it away to start a new one") from None


def judge_and_record(history_path: Path, current: Evaluation, cfg: NightlyConfig) -> Verdict:
    """Compare with the last passing evaluation, then append tonight's to the history (atomically)."""
    history = load_history(history_path)
    # The baseline is the last evaluation that passed, so a regression keeps alerting night after night
    # instead of becoming the new normal after one failed run.
    previous = next((item for item in reversed(history) if item.passed), None)
    alerts = compare_evaluations(previous, current, cfg)
    current = replace(current, passed=not alerts)
    write_json(history_path, [item.to_dict() for item in [*history, current]])
    for alert in alerts:
        log.warning("nightly alert: %s", alert.message)
    return Verdict(current=current, previous=previous, alerts=alerts)


def revalidate(cfg: ValConfig, weights: Path, data_yaml: Path) -> Evaluation:
    """mAP50 of the fine-tuned checkpoint on the val split, as YOLOv5's val.py reports it."""
    if not weights.is_file():
        raise NightlyError(f"{weights}: no fine-tuned model to evaluate; run the pipeline deployment first")
    with tempfile.TemporaryDirectory(prefix="lightweight-nightly-") as scratch:
        data = resolved_dataset_yaml(data_yaml, Path(scratch))
        metrics = validate(
            weights=weights,
            data=data,
            imgsz=cfg.imgsz,
            batch=cfg.batch,
            workers=cfg.workers,
            run_dir=Path(scratch) / "val",
        )
    evaluation = Evaluation(
        map50=round(metrics.map50, 5),
        map50_95=round(metrics.map50_95, 5),
        model_sha256=sha256_file(weights),
        evaluated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    log.info("nightly: %s mAP50=%.4f mAP50-95=%.4f", weights, evaluation.map50, evaluation.map50_95)
    return evaluation


# Never cached: the point of a nightly run is to evaluate again tonight, with tonight's code and libraries.
@task(name="revalidate", cache_policy=NO_CACHE)
def revalidate_task(cfg: ValConfig, weights: Path, data_yaml: Path) -> Evaluation:
    """Re-validate the fine-tuned checkpoint."""
    return revalidate(cfg, weights, data_yaml)
