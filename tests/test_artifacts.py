"""Artifact content: the comparison and people-count tables and the markdown reports."""

import re

from tasks import artifacts
from tasks.artifacts import comparison_rows, people_rows, pipeline_summary
from tasks.config import Params

RESULTS = {
    name: {
        "parameters": p,
        "gflops_640": g,
        "precision": 0.8,
        "recall": 0.7,
        "map50": m,
        "map50_95": 0.4,
        "latency_ms": ms,
        "speedup": s,
        "throughput": 20.0,
    }
    for name, p, g, m, ms, s in [
        ("base", 1_765_270, 4.13, 0.882, 38.8, 1.0),
        ("pruned", 446_182, 1.13, 0.015, 20.8, 1.87),
        ("finetuned", 446_182, 1.13, 0.891, 20.6, 1.88),
    ]
}


def test_keys_are_valid_prefect_artifact_keys():
    keys = [value for name, value in vars(artifacts).items() if name.endswith("_KEY")]
    assert len(keys) == 6
    assert all(re.fullmatch(r"[a-z0-9-]+", key) for key in keys)


def test_comparison_has_one_row_per_model_in_order():
    rows = comparison_rows(RESULTS)
    assert [row["model"] for row in rows] == ["base", "pruned", "finetuned"]
    assert rows[2]["parameters"] == 446_182 and rows[2]["map50"] == 0.891 and rows[2]["speedup"] == 1.88


def test_people_table_per_video_and_empty_without_detection():
    counts = {"b.mp4": {"mean": 3.14159, "max": 6.0, "frames": 12}, "a.mp4": {"mean": 1.0, "max": 2, "frames": 12}}
    assert people_rows(counts) == [
        {"video": "a.mp4", "mean": 1.0, "max": 2, "frames": 12},
        {"video": "b.mp4", "mean": 3.142, "max": 6, "frames": 12},
    ]
    assert people_rows({}) == []


def test_summary_states_ratio_and_what_it_cost():
    text = pipeline_summary(RESULTS, Params.model_validate({"prune": {"ratio": 0.4}}))
    assert "ratio **0.4**" in text
    assert "1,765,270 → 446,182 (3.96x smaller)" in text
    assert "mAP50: 0.882 → 0.891 (+0.009)" in text
    assert "| finetuned | 446,182 | 1.13 | 0.891 |" in text
