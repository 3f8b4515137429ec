"""Stage `val`: the same val split, YOLOv5's metrics, and CPU timing side by side."""

import csv
import itertools
import json
from pathlib import Path

import numpy as np

from tasks.layout import ValOutputs
from tasks.val import compare_models
from tasks.yolo.training import _pr_curve
from tests.conftest import TINY_VAL


def test_comparison_of_base_and_pruned(trained_checkpoint: Path, pruned, tiny_demo: Path, tmp_path: Path):
    out_pruned, prune_metrics = pruned
    out = ValOutputs(tmp_path / "val.json", tmp_path / "compare.md", tmp_path / "pr.csv", tmp_path / "pr.png")
    results = compare_models(
        TINY_VAL,
        weights={"base": trained_checkpoint, "pruned": out_pruned.weights},
        data_yaml=tiny_demo / "data.yaml",
        out=out,
    )
    assert json.loads(out.metrics.read_text()) == results
    assert results["pruned"]["parameters"] == prune_metrics["parameters_after"]
    assert results["base"]["speedup"] == 1.0
    for result in results.values():
        assert 0 <= result["map50"] <= 1 and result["latency_ms"] > 0 and result["throughput"] > 0
    table = out.table.read_text().splitlines()
    assert table[0].startswith("| model | params | GFLOPs@640 | P | R | mAP50 |")
    assert [row.split("|")[1].strip() for row in table[2:]] == ["base", "pruned"]
    if out.pr_csv.exists():  # a 1-epoch model may find nothing at all
        header = next(csv.reader(out.pr_csv.open()))
        assert header[0] == "recall" and set(header[1:]) <= {"base", "pruned"}


def test_pr_curve_is_a_non_increasing_envelope():
    tp = np.array([[1], [0], [1], [1], [0]], dtype=bool)
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    curve = _pr_curve(tp, conf, target_cls=np.zeros(4), points=5)
    recalls, precisions = zip(*curve, strict=True)
    assert recalls == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert precisions == (1.0, 1.0, 0.75, 0.75, 0.0)  # 3 of 4 people found: recall 1.0 is never reached
    assert all(a >= b for a, b in itertools.pairwise(precisions))
