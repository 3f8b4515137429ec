"""Stage `prune`: structural, measured, and a checkpoint YOLOv5's own tools accept as it is."""

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.nn.utils import prune as torch_prune
from typer.testing import CliRunner

from flows.cli import app
from tasks.config import FinetuneConfig, PruneConfig
from tasks.dataset import DatasetError
from tasks.layout import PruneOutputs
from tasks.prune import PruneError, prune_checkpoint
from tasks.pruning import kept_channels
from tasks.yolo import CheckpointError, count_gflops, describe_checkpoint, detection_model, load_checkpoint


def test_half_the_channels_cut_params_and_gflops_more_than_3x(pruned):
    out, metrics = pruned
    assert metrics["parameters_reduction"] >= 3.0 and metrics["gflops_reduction"] >= 3.0
    assert metrics["achieved_channel_ratio"] == pytest.approx(0.5, abs=0.05)
    info = describe_checkpoint(out.weights)
    assert info.parameters == metrics["parameters_after"]
    assert info.nc == 1 and info.names == {0: "person"} and info.has_ema and not info.has_optimizer
    assert json.loads(out.metrics.read_text()) == metrics
    assert out.widths_png.read_bytes().startswith(b"\x89PNG")
    assert out.widths_csv.read_text().splitlines()[0] == "layer,module,before,after"


def test_merged_checkpoint_has_train_py_keys_and_the_rewritten_yaml(pruned, trained_checkpoint: Path):
    out, _ = pruned
    ckpt = load_checkpoint(out.weights)
    assert set(ckpt) == {"epoch", "best_fitness", "model", "ema", "updates", "optimizer", "opt", "git", "date"}
    assert ckpt["epoch"] == -1 and ckpt["optimizer"] is None
    assert ckpt["model"].yaml == yaml.safe_load(out.yaml.read_text())
    source = load_checkpoint(trained_checkpoint)["model"]
    assert ckpt["model"].names == source.names
    torch.testing.assert_close(ckpt["model"].stride, source.stride)
    torch.testing.assert_close(ckpt["model"].model[-1].anchors, source.model[-1].anchors)


def test_stock_detect_and_val_load_the_pruned_checkpoint(pruned, tiny_demo: Path, tmp_path: Path):
    from tasks.dataset import resolved_dataset_yaml
    from tasks.yolo import validate, yolov5_runtime

    out, _ = pruned
    data = resolved_dataset_yaml(tiny_demo / "data.yaml", tmp_path)
    metrics = validate(weights=out.weights, data=data, imgsz=64, batch=4, workers=0, run_dir=tmp_path)
    assert 0.0 <= metrics.map50 <= 1.0
    from yolov5 import detect

    with yolov5_runtime():
        detect.run(
            weights=str(out.weights),
            source=str(tiny_demo / "images" / "val"),
            imgsz=(64, 64),
            device="cpu",
            project=str(tmp_path),
            name="detect",
            save_txt=True,
            nosave=True,
        )
    assert (tmp_path / "detect").is_dir()


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.slow
@pytest.mark.parametrize("use_yaml", [False, True], ids=["cfg-empty", "cfg-pruned-yaml"])
def test_stock_training_keeps_the_pruned_architecture(pruned, tiny_demo: Path, tmp_path: Path, use_yaml: bool):
    from tasks.dataset import resolved_dataset_yaml
    from tasks.yolo import train

    out, metrics = pruned
    capture = _Capture()
    logging.getLogger("yolov5").addHandler(capture)
    try:
        best = train(
            data=resolved_dataset_yaml(tiny_demo / "data.yaml", tmp_path),
            cfg=str(out.yaml) if use_yaml else "",
            weights=str(out.weights),
            run_dir=tmp_path,
            epochs=1,
            imgsz=64,
            batch=4,
            workers=0,
            patience=0,
            seed=0,
        )
    finally:
        logging.getLogger("yolov5").removeHandler(capture)
    transferred = [line for line in capture.lines if line.startswith("Transferred")]
    assert transferred, capture.lines[-20:]
    done, total = map(int, transferred[0].split()[1].split("/"))
    # With a cfg, train.py deliberately skips the one `anchors` buffer and takes anchors from the yaml.
    assert done == (total - 1 if use_yaml else total)
    assert describe_checkpoint(best).parameters == metrics["parameters_after"]
    trained = detection_model(load_checkpoint(best))
    torch.testing.assert_close(
        trained.model[-1].anchors, detection_model(load_checkpoint(out.weights)).model[-1].anchors
    )


def test_hand_made_channel_mask_breaks_on_c3_but_ours_does_not(trained_checkpoint: Path):
    """The user's first attempt: drop channels of one conv and of 'the next conv' only."""
    model = detection_model(load_checkpoint(trained_checkpoint))
    image = torch.rand(1, 3, 64, 64)
    conv = model.model[1].conv  # feeds layer 2, a C3 whose cv1 *and* cv2 read it
    keep = conv.weight.abs().sum(dim=(1, 2, 3)).argsort(descending=True)[: conv.out_channels // 2]
    conv.weight.data = conv.weight.data[keep]
    bn = model.model[1].bn
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(bn, name).data = getattr(bn, name).data[keep]
    next_conv = model.model[2].cv1.conv
    next_conv.weight.data = next_conv.weight.data[:, keep]
    with pytest.raises(RuntimeError, match="channels"):
        model(image)


def test_zeroing_weights_does_not_shrink_anything_but_structural_pruning_does(trained_checkpoint: Path, pruned):
    model = detection_model(load_checkpoint(trained_checkpoint))
    params, gflops = sum(p.numel() for p in model.parameters()), count_gflops(model, 128)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            torch_prune.ln_structured(module, "weight", amount=0.5, n=2, dim=0)
            torch_prune.remove(module, "weight")
    zeroed = sum(float((m.weight == 0).float().mean()) for m in model.modules() if isinstance(m, nn.Conv2d))
    assert zeroed > 0  # the weights really are zero ...
    assert sum(p.numel() for p in model.parameters()) == params  # ... yet nothing is smaller
    assert count_gflops(model, 128) == pytest.approx(gflops)
    _, metrics = pruned
    assert metrics["parameters_after"] < params / 3


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ratio": 0.0}, r"ratio\n  Input should be greater than 0"),
        ({"ratio": 1.0}, r"ratio\n  Input should be less than 1"),
        ({"round_to": 0}, r"round_to\n  Input should be greater than or equal to 8"),
        ({"round_to": 12}, r"round_to\n  Input should be a multiple of 8"),
        ({"importance": "taylor"}, r"importance\n  Input should be 'l2', 'l1', 'bn_scale' or 'random'"),
    ],
)
def test_bad_settings_are_refused_by_the_config(settings: dict, message: str):
    with pytest.raises(ValueError, match=message):
        PruneConfig(**settings)


def test_a_ratio_that_empties_a_layer_is_refused_before_any_work(trained_checkpoint: Path, tmp_path: Path):
    out = PruneOutputs.in_folder(tmp_path / "out")
    with pytest.raises(PruneError, match=r"prune.ratio=0.7 leaves no channels in model\.0\.conv \(16 channels"):
        prune_checkpoint(PruneConfig(ratio=0.7, min_channels=0), weights=trained_checkpoint, out=out)
    assert not (tmp_path / "out").exists()


def test_a_classification_checkpoint_is_refused(tmp_path: Path):
    from yolov5.models.yolo import ClassificationModel, DetectionModel

    from tests.conftest import stock_yaml

    path = tmp_path / "cls.pt"
    classifier = ClassificationModel(model=DetectionModel(stock_yaml("yolov5n.yaml"), nc=1), nc=5, cutoff=10)
    torch.save({"model": classifier, "epoch": -1}, path)
    with pytest.raises(CheckpointError, match="classification model"):
        prune_checkpoint(PruneConfig(), weights=path, out=PruneOutputs.in_folder(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_cli_prune_writes_everything_and_reports(trained_checkpoint: Path, tmp_path: Path):
    result = CliRunner().invoke(app, ["prune", str(trained_checkpoint), "--ratio", "0.37", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "parameters" in result.stdout and "GFLOPs" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["pruned.pt", "pruned.yaml", "prune.json", "prune_widths.csv", "prune_widths.png"]
    )
    failed = CliRunner().invoke(app, ["prune", str(trained_checkpoint), "--ratio", "1.5", "--out", str(tmp_path)])
    assert failed.exit_code == 2 and "ratio: Input should be less than 1" in failed.stderr


def test_min_channels_lets_narrow_layers_survive_high_ratios(trained_checkpoint: Path, tmp_path: Path):
    out = PruneOutputs.in_folder(tmp_path)
    metrics = prune_checkpoint(PruneConfig(ratio=0.7, min_channels=8), weights=trained_checkpoint, out=out)
    widths = {layer["index"]: (layer["before"], layer["after"]) for layer in metrics["layers"]}
    assert widths[0] == (16, 8)  # the stem keeps min_channels instead of emptying
    assert widths[7] == (256, kept_channels(256, 0.7, 8))  # wide layers still lose 70 %
    assert all(after >= 8 and after % 8 == 0 for index, (_, after) in widths.items() if index < 24)
    assert metrics["parameters_after"] < 0.2 * metrics["parameters_before"]


def _stem_filters(weights: Path) -> torch.Tensor:
    return detection_model(load_checkpoint(weights)).model[0].conv.weight.detach().flatten(1)


def _all_rows_in(rows: torch.Tensor, source: torch.Tensor) -> bool:
    return all(any(torch.equal(row, candidate) for candidate in source) for row in rows)


STEP_TRAINING = FinetuneConfig(epochs=1, imgsz=64, batch=4, workers=0, epochs_per_step=1)


@pytest.mark.slow
def test_iterative_mode_fine_tunes_between_steps_and_ends_at_the_one_shot_widths(
    pruned, trained_checkpoint: Path, tiny_demo: Path, tmp_path: Path
):
    one_shot_out, one_shot = pruned
    out = PruneOutputs.in_folder(tmp_path)
    cfg = PruneConfig(ratio=0.5, iterative_steps=2)
    metrics = prune_checkpoint(
        cfg, weights=trained_checkpoint, out=out, retrain=STEP_TRAINING, data_yaml=tiny_demo / "data.yaml"
    )
    assert [step["ratio"] for step in metrics["steps"]] == [0.25, 0.5]
    assert metrics["steps"][0]["epochs"] == 1 and "epochs" not in metrics["steps"][1]  # stage finetune trains last
    assert metrics["steps"][0]["parameters"] > metrics["steps"][1]["parameters"] == metrics["parameters_after"]
    assert [layer["after"] for layer in metrics["layers"]] == [layer["after"] for layer in one_shot["layers"]]
    assert describe_checkpoint(out.weights).parameters == one_shot["parameters_after"]
    assert load_checkpoint(out.weights)["model"].yaml == yaml.safe_load(out.yaml.read_text())
    # One-shot pruning only removes filters; the step in between trained the ones it kept.
    base = _stem_filters(trained_checkpoint)
    assert _all_rows_in(_stem_filters(one_shot_out.weights), base)
    assert not _all_rows_in(_stem_filters(out.weights), base)


def test_step_training_without_steps_is_refused_before_any_work(
    trained_checkpoint: Path, tiny_demo: Path, tmp_path: Path
):
    out = PruneOutputs.in_folder(tmp_path / "out")
    with pytest.raises(PruneError, match=r"needs prune\.iterative_steps > 1"):
        prune_checkpoint(
            PruneConfig(), weights=trained_checkpoint, out=out, retrain=STEP_TRAINING, data_yaml=tiny_demo / "data.yaml"
        )
    assert not (tmp_path / "out").exists()


def test_step_training_on_a_dataset_without_val_split_is_refused_before_any_work(
    trained_checkpoint: Path, tiny_demo: Path, tmp_path: Path
):
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(tiny_demo), "train": "images/train", "names": {0: "person"}}))
    out = PruneOutputs.in_folder(tmp_path / "out")
    with pytest.raises(DatasetError, match="missing 'val'"):
        prune_checkpoint(
            PruneConfig(iterative_steps=2), weights=trained_checkpoint, out=out, retrain=STEP_TRAINING, data_yaml=data
        )
    assert not (tmp_path / "out").exists()
