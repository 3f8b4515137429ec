from pathlib import Path

import pytest
import yaml

from tasks.dataset import DatasetError, read_dataset_yaml, resolved_dataset_yaml


def test_demo_yaml_resolves_relative_to_its_own_folder(tiny_demo: Path):
    data = read_dataset_yaml(tiny_demo / "data.yaml")
    assert Path(data["path"]) == tiny_demo.resolve()
    assert data["names"] == {0: "person"} and data["nc"] == 1


def test_resolved_yaml_lists_absolute_images_in_the_run_folder(tiny_demo: Path, tmp_path: Path):
    resolved = yaml.safe_load(resolved_dataset_yaml(tiny_demo / "data.yaml", tmp_path).read_text())
    val = Path(resolved["val"]).read_text().splitlines()
    assert Path(resolved["val"]).parent == tmp_path
    assert len(val) == len(list((tiny_demo / "images" / "val").glob("*.jpg")))
    assert all(Path(line).is_absolute() and Path(line).is_file() for line in val)


def test_training_leaves_the_dataset_untouched(tiny_demo: Path, trained_checkpoint: Path):
    """YOLOv5 caches labels beside the image list, never inside the (DVC-tracked) dataset."""
    assert trained_checkpoint.is_file()
    assert list(tiny_demo.rglob("*.cache")) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"train": "images/train", "names": {0: "person"}}, "missing 'val'"),
        ({"train": "images/train", "val": "images/nowhere", "names": ["person"]}, "val split not found"),
        ({"train": "images/train", "val": "images/val", "names": ["a"], "nc": 2}, "nc=2 but 1 names"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)
def test_bad_dataset_yaml_is_named(tiny_demo: Path, tmp_path: Path, content, message: str):
    if isinstance(content, dict):
        content = {"path": str(tiny_demo), **content}
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(DatasetError, match=message):
        read_dataset_yaml(path)


def test_missing_dataset_yaml(tmp_path: Path):
    with pytest.raises(DatasetError, match="dataset yaml not found"):
        read_dataset_yaml(tmp_path / "data.yaml")
