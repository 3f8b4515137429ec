"""Stage `finetune`: stock YOLOv5 training that keeps the pruned architecture; bad inputs stop it early."""

from pathlib import Path

import pytest
import yaml

from tasks.config import ConfigError, load_params
from tasks.dataset import DatasetError
from tasks.finetune import FinetuneError, finetune
from tasks.yolo import CheckpointError, describe_checkpoint
from tests.conftest import TINY_FINETUNE, stock_yaml


@pytest.mark.slow
def test_finetuned_model_keeps_the_pruned_architecture(pruned, tiny_demo: Path, tmp_path: Path):
    out, metrics = pruned
    result = finetune(
        TINY_FINETUNE,
        weights=out.weights,
        model_yaml=out.yaml,
        data_yaml=tiny_demo / "data.yaml",
        out_weights=tmp_path / "finetuned.pt",
    )
    info = describe_checkpoint(result)
    assert info.parameters == metrics["parameters_after"]
    assert info.nc == 1 and info.names == {0: "person"}
    assert [layer.out_channels for layer in info.layers] == [layer["after"] for layer in metrics["layers"]]


def test_missing_pruned_checkpoint(tiny_demo: Path, tmp_path: Path):
    with pytest.raises(CheckpointError, match=r"absent\.pt: checkpoint not found"):
        finetune(
            TINY_FINETUNE,
            weights=tmp_path / "absent.pt",
            model_yaml=tmp_path / "x.yaml",
            data_yaml=tiny_demo / "data.yaml",
            out_weights=tmp_path / "o.pt",
        )


def test_a_yaml_that_does_not_rebuild_the_checkpoint_is_refused(pruned, tiny_demo: Path, tmp_path: Path):
    out, _ = pruned
    with pytest.raises(FinetuneError, match="does not rebuild"):
        finetune(
            TINY_FINETUNE,
            weights=out.weights,
            model_yaml=stock_yaml("yolov5n.yaml"),
            data_yaml=tiny_demo / "data.yaml",
            out_weights=tmp_path / "o.pt",
        )
    assert not (tmp_path / "o.pt").exists()


def test_a_dataset_without_val_split_is_refused_before_training(pruned, tiny_demo: Path, tmp_path: Path):
    out, _ = pruned
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(tiny_demo), "train": "images/train", "names": {0: "person"}}))
    with pytest.raises(DatasetError, match="missing 'val'"):
        finetune(TINY_FINETUNE, weights=out.weights, model_yaml=out.yaml, data_yaml=data, out_weights=tmp_path / "o.pt")
    assert not (tmp_path / "o.pt").exists()


def test_epochs_below_one_are_a_config_error(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"finetune": {"epochs": 0}}))
    with pytest.raises(ConfigError, match=r"finetune\.epochs: Input should be greater than or equal to 1"):
        load_params(params)
