"""Reports as Prefect artifacts: plain builders for their content, and the calls that publish them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.config import Params

if TYPE_CHECKING:
    from tasks.nightly import Verdict

__all__ = [
    "ALERT_KEY",
    "COMPARISON_KEY",
    "FLOW_KEY",
    "NIGHTLY_KEY",
    "PEOPLE_KEY",
    "SUMMARY_KEY",
    "alert_markdown",
    "comparison_rows",
    "flow_rows",
    "nightly_markdown",
    "people_rows",
    "pipeline_summary",
    "publish_nightly",
    "publish_pipeline",
]

# Artifact keys: lowercase letters, digits and dashes (Prefect's rule). Each run adds a new version.
SUMMARY_KEY = "pipeline-summary"
COMPARISON_KEY = "model-comparison"
PEOPLE_KEY = "people-counts"
FLOW_KEY = "people-flow"
NIGHTLY_KEY = "nightly-summary"
ALERT_KEY = "nightly-alert"

_COMPARISON_COLUMNS = (
    "parameters",
    "gflops_640",
    "precision",
    "recall",
    "map50",
    "map50_95",
    "latency_ms",
    "speedup",
    "throughput",
)
_FLOW_COLUMNS = ("video", "people", "people_true", "crossings_in", "crossings_out", "lines", "colours")


def comparison_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per model (base, pruned, finetuned) from metrics/val.json."""
    return [
        {"model": name, **{column: values.get(column) for column in _COMPARISON_COLUMNS}}
        for name, values in results.items()
    ]


def people_rows(counts: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """One row per video from {video: {mean, max, frames}} (people per sampled frame)."""
    return [
        {"video": video, "mean": round(float(c["mean"]), 3), "max": int(c["max"]), "frames": int(c["frames"])}
        for video, c in sorted(counts.items())
    ]


def flow_rows(track: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per video from the track stage's result: unique people, line crossings, people by colour."""
    rows = []
    for video, v in sorted(track["videos"].items()):
        row: dict[str, Any] = dict.fromkeys(("people", "people_true", "crossings_in", "crossings_out"))
        row |= {"video": video, "lines": f"failed: {v.get('error', '')}", "colours": ""}
        if v["status"] == "ok":
            lines = v["lines"]
            row |= {
                "people": v["people"],
                "people_true": v.get("ground_truth", {}).get("people_true"),  # None without ground truth
                "crossings_in": sum(c["in"] for c in lines.values()),
                "crossings_out": sum(c["out"] for c in lines.values()),
                "lines": "; ".join(f"{name}: {c['in']} in, {c['out']} out" for name, c in lines.items()),
                "colours": ", ".join(f"{colour} {n}" for colour, n in v["colours"].items()),
            }
        rows.append({key: row[key] for key in _FLOW_COLUMNS})
    return rows


def pipeline_summary(results: Mapping[str, Mapping[str, Any]], params: Params) -> str:
    """The run in a few lines: what was pruned, what it cost, what it bought."""
    base, final = results["base"], results["finetuned"]
    lines = [
        "# LightWeight pipeline",
        "",
        f"Pruned at ratio **{params.prune.ratio}** ({params.prune.importance} importance), fine-tuned for "
        f"**{params.finetune.epochs}** epochs.",
        "",
        f"- parameters: {base['parameters']:,} → {final['parameters']:,} "
        f"({base['parameters'] / max(final['parameters'], 1):.2f}x smaller)",
        f"- GFLOPs at 640: {base['gflops_640']:.2f} → {final['gflops_640']:.2f}",
        f"- mAP50: {base['map50']:.3f} → {final['map50']:.3f} ({final['map50'] - base['map50']:+.3f})",
        f"- CPU latency (batch 1, {params.val.latency_imgsz} px): {base['latency_ms']:.1f} ms → "
        f"{final['latency_ms']:.1f} ms ({final['speedup']:.2f}x)",
        "",
        "| model | params | GFLOPs@640 | mAP50 | mAP50-95 | latency ms | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['parameters']:,} | {r['gflops_640']:.2f} | {r['map50']:.3f} "
            f"| {r['map50_95']:.3f} | {r['latency_ms']:.1f} | {r['speedup']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def nightly_markdown(verdict: Verdict) -> str:
    """Tonight against the baseline it was compared with."""
    now, before = verdict.current, verdict.previous
    lines = [f"# Nightly evaluation: {'passed' if verdict.passed else 'FAILED'}", ""]
    if before is None:
        lines.append("First evaluation: nothing to compare with yet; it becomes the baseline.")
    else:
        lines.append(f"Compared with the last passing evaluation of {before.evaluated_at or 'an earlier run'}.")
    lines += ["", "| metric | baseline | tonight |", "|---|---:|---:|"]
    lines.append(f"| mAP50 | {before.map50:.4f} | {now.map50:.4f} |" if before else f"| mAP50 | - | {now.map50:.4f} |")
    for video, mean in sorted(now.people_per_frame.items()):
        was = before.people_per_frame.get(video) if before else None
        lines.append(f"| people per frame, {video} | {'-' if was is None else f'{was:.2f}'} | {mean:.2f} |")
    lines += ["", f"Model sha256 `{now.model_sha256[:12]}`, evaluated {now.evaluated_at}."]
    return "\n".join(lines) + "\n"


def alert_markdown(verdict: Verdict) -> str:
    """What regressed, for whoever is on call."""
    lines = ["# Nightly evaluation alert", "", *(f"- {alert.message}" for alert in verdict.alerts), ""]
    lines.append(
        "The run is marked Failed. Later nights keep comparing with the last passing evaluation "
        "until the regression is fixed."
    )
    return "\n".join(lines) + "\n"


def publish_pipeline(
    results: Mapping[str, Mapping[str, Any]],
    params: Params,
    people: Mapping[str, Mapping[str, float]] | None = None,
    track: Mapping[str, Any] | None = None,
) -> list[str]:
    """Summary, comparison table and (when detection and tracking ran) people counts and people flow; returns the
    keys written."""
    create_markdown_artifact(pipeline_summary(results, params), key=SUMMARY_KEY, description="Pipeline summary")
    create_table_artifact(
        comparison_rows(results),
        key=COMPARISON_KEY,
        description="Base, pruned and fine-tuned detectors on the val split",
    )
    keys = [SUMMARY_KEY, COMPARISON_KEY]
    if people:
        create_table_artifact(people_rows(people), key=PEOPLE_KEY, description="People per sampled frame, by video")
        keys.append(PEOPLE_KEY)
    if track and track["videos"]:
        create_table_artifact(
            flow_rows(track), key=FLOW_KEY, description="Unique people, line crossings and colours, by video"
        )
        keys.append(FLOW_KEY)
    return keys


def publish_nightly(verdict: Verdict) -> list[str]:
    """The nightly summary, plus an alert artifact when something regressed; returns the keys written."""
    create_markdown_artifact(nightly_markdown(verdict), key=NIGHTLY_KEY, description="Nightly evaluation")
    if verdict.passed:
        return [NIGHTLY_KEY]
    create_markdown_artifact(alert_markdown(verdict), key=ALERT_KEY, description="Nightly regression alert")
    return [NIGHTLY_KEY, ALERT_KEY]
