"""The Prefect cache keys: the declared inputs' contents, the declared params and the code files, nothing else."""

import os
import shutil
from pathlib import Path

import pytest

from tasks.caching import ItemCachePolicy, StageCachePolicy, code_fingerprint, fingerprint
from tasks.config import Params
from tasks.registry import PROJECT


def _project(root: Path) -> Path:
    (root / "data" / "detections").mkdir(parents=True)
    (root / "data" / "detections" / "cam.csv").write_text("frame,x1\n0,1\n")
    (root / "data" / "demo" / "videos").mkdir(parents=True)
    (root / "data" / "demo" / "videos" / "cam.mp4").write_bytes(b"video")
    return root


def _crop_key(root: Path, params: Params | None = None) -> str:
    return StageCachePolicy(stage="crop").compute_key(None, {"params": params or Params(), "root": root}, {})


def test_the_key_is_the_contents_not_the_place(tmp_path: Path):
    first, second = _project(tmp_path / "a"), _project(tmp_path / "b")
    assert _crop_key(first) == _crop_key(second)
    os.utime(second / "data" / "detections" / "cam.csv", (1, 1))  # touched, same bytes
    assert _crop_key(first) == _crop_key(second)
    (second / "data" / "detections" / "cam.csv").write_text("frame,x1\n0,2\n")
    assert _crop_key(first) != _crop_key(second)


def test_temporaries_are_never_inputs(tmp_path: Path):
    root = _project(tmp_path)
    before = _crop_key(root)
    (root / "data" / "detections" / ".cam.csv.abcd1234.tmp").write_text("half")
    (root / "data" / "demo" / ".videos.abcd1234.tmp").mkdir()
    (root / "data" / "demo" / "videos" / ".x.mp4.abcd1234.tmp").write_bytes(b"half")
    assert _crop_key(root) == before
    (root / "data" / "detections" / "other.csv").write_text("frame\n")
    assert _crop_key(root) != before


def test_only_the_declared_params_count(tmp_path: Path):
    root = _project(tmp_path)
    base = Params()
    assert _crop_key(root, base) != _crop_key(
        root, base.model_copy(update={"crop": base.crop.model_copy(update={"pad": 0.2})})
    )
    unrelated = base.model_copy(update={"finetune": base.finetune.model_copy(update={"epochs": 3})})
    assert _crop_key(root, base) == _crop_key(root, unrelated)


def test_a_deleted_output_is_not_a_cache_hit(tmp_path: Path):
    class Store:
        def exists(self, key: str) -> bool:
            return True

    class Context:
        result_store = Store()

    root = _project(tmp_path)
    policy = StageCachePolicy(stage="crop")
    plain = _crop_key(root)
    assert policy.compute_key(Context(), {"params": Params(), "root": root}, {}) != plain  # data/crops is missing
    (root / "data" / "crops").mkdir()
    assert policy.compute_key(Context(), {"params": Params(), "root": root}, {}) == plain


def test_editing_a_helper_changes_exactly_the_keys_of_the_stages_that_import_it(tmp_path, monkeypatch):
    copy = tmp_path / "code"
    shutil.copytree(PROJECT / "tasks", copy / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr("tasks.registry.PROJECT", copy)
    monkeypatch.setattr("tasks.registry.TASKS", copy / "tasks")
    names = ("crop", "classify", "detect", "base", "flow_report")
    before = {name: code_fingerprint(name) for name in names}
    with (copy / "tasks" / "boxes.py").open("a") as handle:
        handle.write("\n# an edit\n")
    changed = {name for name in names if code_fingerprint(name) != before[name]}
    assert changed == {"crop", "classify", "flow_report"}


def test_item_policy_is_the_stages_key_plus_the_item_and_where_it_writes(tmp_path: Path):
    policy = ItemCachePolicy(stage="detect", item="video", output="out_csv")

    def key(root: Path, video: str, out: str) -> str:
        inputs = {"params": Params(), "root": root, "video": root / video, "out_csv": root / out}
        return policy.compute_key(None, inputs, {})

    first, moved = _project(tmp_path / "a"), _project(tmp_path / "b")
    (first / "data" / "demo" / "videos" / "other.mp4").write_bytes(b"another video")
    (moved / "data" / "demo" / "videos" / "other.mp4").write_bytes(b"another video")
    video, other = "data/demo/videos/cam.mp4", "data/demo/videos/other.mp4"
    assert key(first, video, "data/detections/cam.csv") == key(moved, video, "data/detections/cam.csv")
    assert key(first, video, "data/detections/cam.csv") != key(first, other, "data/detections/cam.csv")
    assert key(first, video, "data/detections/cam.csv") != key(first, video, "nightly/detections/cam.csv")
    with_other_weights = Params().model_copy(update={"detect": Params().detect.model_copy(update={"conf": 0.5})})
    inputs = {"params": with_other_weights, "root": first, "video": first / video, "out_csv": first / "x.csv"}
    assert policy.compute_key(None, inputs, {}) != key(first, video, "x.csv")  # the stage's params are in it


@pytest.mark.parametrize("value", [Path("missing/file"), {"b": 1, "a": [1, 2]}, Params().crop])
def test_fingerprint_is_stable(value):
    assert fingerprint(value) == fingerprint(value)
