"""Stage `export`: checked exports written atomically with their metrics; bad inputs and unequal ones write nothing."""

import json
import sys
from pathlib import Path

import onnx
import pytest
import torch
import typer
from onnx import numpy_helper
from pydantic import ValidationError
from typer.testing import CliRunner

import tasks.export
from flows.export_cli import export as export_command
from tasks.config import ConfigError, validated
from tasks.dataset import resolved_dataset_yaml
from tasks.export import STAGE, ExportConfig, ExportError, export_checkpoint, export_models
from tasks.runtimes import read_exported
from tasks.yolo import CheckpointError
from tasks.yolo.export import check_export, sample_images

TINY_EXPORT = ExportConfig(imgsz=64, check_images=4, map50_imgsz=96)  # mAP50 checked at another size than exported


def _listing(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden temporaries included) with its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_stage_writes_proven_exports_and_metrics(
    trained_checkpoint: Path, pruned, tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    weights = {"base": trained_checkpoint, "finetuned": pruned[0].weights}
    out, metrics_path = tmp_path / "models", tmp_path / "metrics" / "export.json"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    metrics = export_models(
        TINY_EXPORT, weights=weights, data_yaml=tiny_demo / "data.yaml", out_dir=out, metrics_path=metrics_path
    )
    assert list((tmp_path / "cwd").iterdir()) == []  # YOLOv5's val.run writes results.html into its save_dir

    assert sorted(p.name for p in out.iterdir()) == [
        "base.onnx",
        "base_openvino",
        "finetuned.onnx",
        "finetuned_openvino",
        "int8",
    ]  # no temporaries left
    assert list((out / "int8").iterdir()) == []  # INT8 off: the stage's output folder is there, empty
    assert sorted(p.name for p in (out / "finetuned_openvino").iterdir()) == [
        "finetuned.bin",
        "finetuned.xml",
        "finetuned.yaml",
    ]
    assert json.loads(metrics_path.read_text()) == metrics
    for name, runtimes in metrics["models"].items():
        assert set(runtimes) == {"torch", "onnxruntime", "openvino"}
        assert runtimes["torch"]["file_bytes"] == weights[name].stat().st_size
        for runtime, path in (("onnxruntime", out / f"{name}.onnx"), ("openvino", out / f"{name}_openvino")):
            result = runtimes[runtime]
            assert result["max_abs_diff"] <= TINY_EXPORT.max_output_diff
            assert abs(result["map50"] - runtimes["torch"]["map50"]) <= TINY_EXPORT.max_map50_diff
            size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.iterdir())
            assert result["file_bytes"] == size
            assert read_exported(path).names == {0: "person"}
    assert metrics["int8"]["enabled"] is False
    assert metrics["imgsz"] == 64 and metrics["map50_imgsz"] == 96
    images, data = sample_images(None, 1, 64), resolved_dataset_yaml(tiny_demo / "data.yaml", tmp_path / "data")
    for name, path in weights.items():  # the checkpoint's mAP50 is the one at map50_imgsz
        at_96, _ = check_export(path, {}, images=images, data_yaml=data, imgsz=96)
        assert metrics["models"][name]["torch"]["map50"] == round(at_96, 5)


def _tampered_export_onnx(real):
    """export_onnx, then 0.1 added to the biases of one output convolution: no longer the checkpoint's network.

    (The 1-epoch test detector's output weights are still near zero: its outputs are mostly those biases.)
    """

    def tampered(weights, out, **options):
        result = real(weights, out, **options)
        model = onnx.load(str(out))
        bias = next(i for i in model.graph.initializer if i.name.endswith(".m.0.bias"))  # Detect's first conv
        bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.1, bias.name))
        onnx.save(model, str(out))
        return result

    return tampered


def test_an_export_that_differs_fails_naming_model_runtime_and_difference(
    pruned, tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    out, metrics_path = tmp_path / "models", tmp_path / "metrics" / "export.json"
    out.mkdir()
    (out / "finetuned.onnx").write_bytes(b"the previous export")
    before = _listing(out)
    monkeypatch.setattr(tasks.export, "export_onnx", _tampered_export_onnx(tasks.export.export_onnx))
    with pytest.raises(ExportError) as failure:
        export_models(
            TINY_EXPORT,
            weights={"finetuned": pruned[0].weights},
            data_yaml=tiny_demo / "data.yaml",
            out_dir=out,
            metrics_path=metrics_path,
        )
    message = str(failure.value)
    assert "nothing was written" in message
    assert "finetuned on onnxruntime: raw outputs differ from the checkpoint's by up to" in message
    assert "finetuned on openvino: raw outputs differ" in message  # the IR was converted from the tampered file
    assert _listing(out) == before and not metrics_path.exists()


def test_a_checkpoint_that_is_not_a_detection_model_is_refused_first(trained_checkpoint: Path, tmp_path: Path):
    foreign = tmp_path / "state_dict.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match=r"state_dict\.pt: not a YOLOv5 checkpoint"):
        export_models(
            TINY_EXPORT,
            weights={"base": trained_checkpoint, "finetuned": foreign},
            data_yaml=tmp_path / "absent.yaml",
            out_dir=tmp_path / "models",
            metrics_path=tmp_path / "export.json",
        )
    with pytest.raises(CheckpointError, match=r"absent\.pt: checkpoint not found"):
        export_checkpoint(TINY_EXPORT, weights=tmp_path / "absent.pt", out_dir=tmp_path / "models")
    assert not (tmp_path / "models").exists() and not (tmp_path / "export.json").exists()


def test_a_missing_runtime_package_is_named_before_any_work(
    trained_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if `pip install openvino` had never run
    with pytest.raises(ExportError, match=r"openvino is not installed: pip install openvino"):
        export_checkpoint(TINY_EXPORT, weights=trained_checkpoint, out_dir=tmp_path / "models")
    assert not (tmp_path / "models").exists()
    onnx_only = ExportConfig(formats=("onnx",), imgsz=64, check_images=2)  # does not need it
    report = export_checkpoint(onnx_only, weights=trained_checkpoint, out_dir=tmp_path / "models")
    assert set(report["models"]["best"]) == {"torch", "onnxruntime"}
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["best.onnx"]


def test_bad_export_settings_are_config_errors():
    with pytest.raises(ConfigError, match=r"options: invalid parameters\n  int8_images: Input should be greater"):
        validated(ExportConfig, "options", int8=True, int8_images=0)
    with pytest.raises(ValidationError, match=r"formats is empty"):
        ExportConfig(formats=())
    with pytest.raises(ValidationError, match=r"formats lists a format twice"):
        ExportConfig(formats=("onnx", "onnx"))
    with pytest.raises(ValidationError, match=r"Input should be 'onnx' or 'openvino'"):
        ExportConfig(formats=("tflite",))
    with pytest.raises(ValidationError, match=r"Extra inputs are not permitted"):
        ExportConfig(half=True)
    with pytest.raises(ValidationError, match=r"map50_imgsz 192 differs from imgsz 640, but a static export"):
        ExportConfig(dynamic=False, map50_imgsz=192)
    assert ExportConfig(dynamic=False, map50_imgsz=640).map50_size == ExportConfig(map50_imgsz=None).map50_size == 640


def test_stage_declaration():
    assert STAGE.name == "export" and STAGE.param_keys == ("export", "model")
    assert STAGE.deps == ("models/base.pt", "models/finetuned.pt", "data/demo")
    assert STAGE.outs == (
        "models/base.onnx",
        "models/finetuned.onnx",
        "models/base_openvino",
        "models/finetuned_openvino",
        "models/int8",
    )
    assert STAGE.metrics == ("metrics/export.json",)


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(export_command)
    app.command("noop")(lambda: None)  # two commands: typer then dispatches by name, as in `lightweight`
    return app


def test_cli_exports_any_checkpoint_and_reports_each_file(pruned, tmp_path: Path):
    runner = CliRunner()
    out = tmp_path / "exported"
    result = runner.invoke(
        _cli(), ["export", str(pruned[0].weights), "--format", "onnx", "--out", str(out), "--imgsz", "64"]
    )
    assert result.exit_code == 0, result.output
    assert f"{out / 'pruned.onnx'}: " in result.stdout and "max |output diff|" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["pruned.onnx"]
    assert read_exported(out / "pruned.onnx").stride == 32

    failed = runner.invoke(_cli(), ["export", str(pruned[0].weights), "--int8", "--out", str(out)])
    assert failed.exit_code != 0 and isinstance(failed.exception, ExportError)
    assert "INT8 needs calibration images: give a dataset (--data DATA.yaml)" in str(failed.exception)
    assert sorted(p.name for p in out.iterdir()) == ["pruned.onnx"]  # refused before any work


def test_stage_without_openvino_leaves_its_ir_folders_empty(trained_checkpoint: Path, tiny_demo: Path, tmp_path):
    """dvc.yaml declares every output of the stage: without openvino in export.formats the IR folders are empty
    (a folder of an earlier run included), and a list without onnx is refused before any work."""
    out, metrics_path = tmp_path / "models", tmp_path / "export.json"
    (out / "base_openvino").mkdir(parents=True)
    (out / "base_openvino" / "base.xml").write_text("an earlier run's IR")
    onnx_only = TINY_EXPORT.model_copy(update={"formats": ("onnx",)})
    weights = {"base": trained_checkpoint}
    export_models(onnx_only, weights=weights, data_yaml=tiny_demo / "data.yaml", out_dir=out, metrics_path=metrics_path)
    assert sorted(p.name for p in out.iterdir()) == ["base.onnx", "base_openvino", "int8"]
    assert list((out / "base_openvino").iterdir()) == []
    assert set(json.loads(metrics_path.read_text())["models"]["base"]) == {"torch", "onnxruntime"}

    ir_only = TINY_EXPORT.model_copy(update={"formats": ("openvino",)})
    with pytest.raises(ConfigError, match=r"export\.formats \['openvino'\]: the export stage always writes"):
        export_models(ir_only, weights=weights, data_yaml=tiny_demo, out_dir=tmp_path / "no", metrics_path=metrics_path)
    assert not (tmp_path / "no").exists()


def test_cli_int8_writes_the_kept_model_beside_the_others(trained_checkpoint: Path, tiny_demo: Path, tmp_path: Path):
    out = tmp_path / "exported"
    (out / "int8").mkdir(parents=True)
    (out / "int8" / "another.onnx").write_bytes(b"another checkpoint's INT8 model")
    arguments = ["export", str(trained_checkpoint), "--format", "onnx", "--imgsz", "64", "--out", str(out)]
    data = ["--data", str(tiny_demo / "data.yaml"), "--int8", "--int8-images", "8"]
    # A 1-epoch detector's mAP50 turns on a few near-tied scores: ONNX Runtime's 1e-5 output differences moved
    # it by 0.07 at 64 px. This test is about where the files go; the next ones check the INT8 decision.
    tolerances = ["--max-map50-diff", "1", "--max-int8-map50-drop", "1"]
    result = CliRunner().invoke(_cli(), arguments + data + tolerances)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.startswith(str(out / "int8" / "best.onnx")))
    assert ", kept: mAP50 drop " in line, line
    assert read_exported(out / "int8" / "best.onnx").names == {0: "person"}
    assert (out / "int8" / "another.onnx").read_bytes() == b"another checkpoint's INT8 model"  # file by file


def test_int8_keeps_a_quantized_model_with_the_head_in_fp32_when_its_map50_holds(
    trained_checkpoint: Path, tiny_demo: Path, tmp_path: Path
):
    cfg = ExportConfig(formats=("onnx",), imgsz=64, check_images=2, map50_imgsz=96, int8=True, int8_images=8)
    out, metrics_path = tmp_path / "models", tmp_path / "export.json"
    metrics = export_models(
        cfg,
        weights={"base": trained_checkpoint},
        data_yaml=tiny_demo / "data.yaml",
        out_dir=out,
        metrics_path=metrics_path,
    )
    result, reference = metrics["models"]["base"]["onnxruntime_int8"], metrics["models"]["base"]["torch"]
    drop = reference["map50"] - result["map50"]
    assert abs(drop) < 0.005, drop  # quantized with the head in FP32, the 1-epoch detector loses next to nothing
    assert result["kept"] is True and result["reason"].startswith("kept: mAP50 drop")
    assert metrics["int8"]["kept"] == ["base"]
    assert metrics["int8"]["calibration_images"] == 8 and metrics["int8"]["calibration_imgsz"] == 96
    quantized = out / "int8" / "base.onnx"
    assert result["file_bytes"] == quantized.stat().st_size < (out / "base.onnx").stat().st_size
    assert read_exported(quantized).names == {0: "person"}
    graph = onnx.load(str(quantized)).graph
    produced_by = {output: node for node in graph.node for output in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    head = [node for node in convs if node.name.startswith("/model.24/")]
    assert len(head) == 3 and len(convs) > 3
    for node in convs:  # a quantized conv reads its weight through DequantizeLinear; the head's read FP32 weights
        weight_source = produced_by.get(node.input[1])
        quantized_weight = weight_source is not None and weight_source.op_type == "DequantizeLinear"
        assert quantized_weight is (node not in head), node.name


def test_int8_calibration_needs_enough_training_images_and_fails_before_any_work(
    trained_checkpoint: Path, tiny_demo: Path, tmp_path: Path
):
    cfg = ExportConfig(formats=("onnx",), imgsz=64, check_images=2, int8=True, int8_images=100)
    with pytest.raises(
        ExportError, match=r"INT8 calibration needs export.int8_images = 100 training images; the train"
    ):
        export_models(
            cfg,
            weights={"base": trained_checkpoint},
            data_yaml=tiny_demo / "data.yaml",
            out_dir=tmp_path / "models",
            metrics_path=tmp_path / "export.json",
        )
    assert not (tmp_path / "models").exists() and not (tmp_path / "export.json").exists()


def test_the_int8_decision_follows_the_map50_drop():
    cfg = ExportConfig(int8=True, max_int8_map50_drop=0.01)
    within = {"torch": {"map50": 0.80}, "onnxruntime_int8": {"map50": 0.795}}
    beyond = {"torch": {"map50": 0.80}, "onnxruntime_int8": {"map50": 0.78}}
    assert tasks.export._int8_decision(within, cfg) == (
        True,
        "kept: mAP50 drop +0.0050 within export.max_int8_map50_drop 0.01",
    )
    assert tasks.export._int8_decision(beyond, cfg) == (
        False,
        "not kept: mAP50 drop +0.0200 exceeds export.max_int8_map50_drop 0.01",
    )
