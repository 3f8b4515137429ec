"""Stage `val`: the same val split, YOLOv5's metrics, and CPU timing side by side."""

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tasks.config import ConfigError, ExportConfig, load_params
from tasks.layout import ValOutputs
from tasks.val import compare_models
from tasks.yolo.export import export_onnx, sample_images
from tasks.yolo.quantize import quantize_int8
from tasks.yolo.training import _pr_curve
from tests.conftest import TINY_VAL


def _int8_model(weights: Path, folder: Path) -> Path:
    """An INT8 model of `weights` as stage export makes it (static, at TINY_VAL's timing size)."""
    onnx_file = folder / "fp32.onnx"
    export_onnx(weights, onnx_file, imgsz=TINY_VAL.latency_imgsz, opset=17, dynamic=False)
    calibration = sample_images(None, 4, TINY_VAL.latency_imgsz)
    return quantize_int8(onnx_file, folder / "int8.onnx", calibration=calibration, keep_fp32_scope="/model.24/")


def test_comparison_of_base_and_pruned(trained_checkpoint: Path, pruned, tiny_demo: Path, tmp_path: Path):
    out_pruned, prune_metrics = pruned
    out = ValOutputs(
        *(tmp_path / name for name in ("val.json", "compare.md", "pr.csv", "pr.png", "lat.csv", "lat.png"))
    )
    results = compare_models(
        TINY_VAL,
        weights={"base": trained_checkpoint, "pruned": out_pruned.weights},
        data_yaml=tiny_demo / "data.yaml",
        export=ExportConfig(dynamic=False, map50_imgsz=None),  # static: exported at val.latency_imgsz, timed there
        out=out,
        int8={"pruned": _int8_model(out_pruned.weights, tmp_path)},  # as if export kept only the pruned one's
    )
    assert json.loads(out.metrics.read_text()) == results
    assert results["pruned"]["parameters"] == prune_metrics["parameters_after"]
    assert results["base"]["speedup"] == 1.0
    for result in results.values():
        assert 0 <= result["map50"] <= 1 and result["latency_ms"] > 0 and result["throughput"] > 0
    table = out.table.read_text().splitlines()
    assert table[0].startswith("| model | params | GFLOPs@640 | P | R | mAP50 |")
    assert [row.split("|")[1].strip() for row in table[2:4]] == ["base", "pruned"]
    # the latency matrix: every model on every runtime at every thread count, timed in one process
    rows = list(csv.DictReader(out.latency_csv.open()))
    cells = [(int(r["threads"]), r["model"], r["runtime"]) for r in rows]
    fp32 = ["torch", "onnxruntime", "openvino"]
    assert sorted(cells) == sorted(
        [*itertools.product(TINY_VAL.latency_threads, ["base", "pruned"], fp32)]
        + [(threads, "pruned", "onnxruntime_int8") for threads in TINY_VAL.latency_threads]
    )
    for r in rows:
        assert float(r["ms"]) > 0
        ms = {(q["model"], q["runtime"]): float(q["ms"]) for q in rows if q["threads"] == r["threads"]}
        # ms are rounded to the microsecond in the file, the ratios computed from the unrounded times
        assert float(r["vs_base_torch"]) == pytest.approx(ms["base", "torch"] / float(r["ms"]), rel=2e-3)
        if r["runtime"] == "onnxruntime_int8":  # no base model on it: no same-runtime ratio
            assert r["vs_base_same_runtime"] == ""
            continue
        assert float(r["vs_base_same_runtime"]) == pytest.approx(ms["base", r["runtime"]] / float(r["ms"]), rel=2e-3)
        if r["model"] == "base":
            assert float(r["vs_base_same_runtime"]) == 1.0
    first = TINY_VAL.latency_threads[0]
    for name, result in results.items():
        timed = fp32 + (["onnxruntime_int8"] if name == "pruned" else [])
        assert set(result["latency"]) == {f"{rt}@{t}" for rt in timed for t in TINY_VAL.latency_threads}
        assert result["latency_ms"] == result["latency"][f"torch@{first}"]["ms"]
    assert f"| {first} | pruned | onnxruntime_int8 | " in out.table.read_text()
    assert out.latency_png.stat().st_size > 0
    assert sum(line.startswith("| 1 | ") or line.startswith("| 2 | ") for line in table) == len(rows)
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


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"runtimes": ["onnxruntime"]}, "val.runtimes: must include torch"),
        (
            {"runtimes": ["torch", "tensorrt"]},
            "val.runtimes.1: Input should be 'torch', 'onnxruntime', 'openvino' or 'onnxruntime_int8'",
        ),
        ({"latency_threads": [1, 1]}, r"val.latency_threads: values must be distinct, got \[1, 1\]"),
        ({"latency_threads": []}, "val.latency_threads: List should have at least 1 item"),
    ],
)
def test_bad_latency_settings_are_config_errors(tmp_path: Path, section: dict, message: str):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"val": section}))
    with pytest.raises(ConfigError, match=message):
        load_params(tmp_path / "params.yaml")
