"""A pickle that reaches outside the allow-list is refused in LightWeight's words, naming the global.

Every payload here would create a marker file if it ran; each test checks the file is still absent. torch's
own message for these files advises re-running with `weights_only=False`; ours never does.
"""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import pytest
import torch

from tasks.yolo import UnsafeCheckpointError, load_checkpoint, validate
from tasks.yolo.checkpoint import unsafe_globals


class _System:
    """Pickles to `os.system("touch MARKER")`: stored as `posix.system` (`nt.system` on Windows)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


class _Foreign:
    """Any class outside the allow-list, here one whose state would do nothing at all."""

    def __init__(self) -> None:
        self.width = 16


SYSTEM = f"{os.system.__module__}.system"  # posix.system


def _zip(path: Path, obj: object) -> None:
    torch.save(obj, path)


def _legacy(path: Path, obj: object) -> None:
    torch.save(obj, path, _use_new_zipfile_serialization=False)


def _raw_pickle(protocol: int):
    def write(path: Path, obj: object) -> None:
        path.write_bytes(pickle.dumps(obj, protocol=protocol))

    return write


WRITERS = {
    "torch.save": _zip,
    "legacy torch.save": _legacy,
    "raw pickle protocol 0": _raw_pickle(0),
    "raw pickle protocol 2": _raw_pickle(2),
    "raw pickle protocol 5": _raw_pickle(5),  # torch's loader stops at the FRAME opcode, before any global
}


def _nested(marker: Path) -> dict:
    """The payload deep inside an otherwise ordinary checkpoint dict."""
    return {"epoch": 3, "model": None, "opt": {"hyp": [1.0, {"extra": (torch.zeros(2), _System(marker))}]}}


def _assert_refused(path: Path, name: str) -> str:
    with pytest.raises(UnsafeCheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert name in message
    assert "weights_only" not in message
    assert "Nothing in the file was executed" in message
    return message


@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
@pytest.mark.parametrize("build", [lambda m: {"model": _System(m)}, _nested], ids=["top-level", "nested"])
def test_reduce_to_os_system_is_refused_by_name_and_never_runs(tmp_path: Path, writer, build):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    writer(path, build(marker))
    message = _assert_refused(path, SYSTEM)
    assert message.startswith(f"{path}: refused to load")
    assert not marker.exists()


def test_payload_is_live_without_the_allow_list(tmp_path: Path):
    """Guards the tests above: the same file under plain pickle does run its payload."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    _raw_pickle(2)(path, {"model": _System(marker)})
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_a_class_outside_the_allow_list_is_named(tmp_path: Path):
    path = tmp_path / "foreign.pt"
    torch.save({"model": _Foreign(), "epoch": 0}, path)
    _assert_refused(path, f"{__name__}._Foreign")


def test_every_refused_global_is_listed_in_file_order(tmp_path: Path):
    path = tmp_path / "both.pt"
    torch.save({"a": _Foreign(), "b": _System(tmp_path / "pwned")}, path)
    assert unsafe_globals(path) == [f"{__name__}._Foreign", SYSTEM]
    message = _assert_refused(path, f"GLOBAL {__name__}._Foreign")
    assert f"It also references {SYSTEM}." in message


def test_yolov5_own_loads_are_refused_in_our_words(tmp_path: Path, tiny_demo: Path):
    """val.py loads the weights itself; LightWeight checks them first, so torch's text never reaches the user."""
    from tasks.dataset import resolved_dataset_yaml

    marker = tmp_path / "pwned"
    path = tmp_path / "best.pt"
    torch.save(_nested(marker), path)
    data = resolved_dataset_yaml(tiny_demo / "data.yaml", tmp_path / "run")
    with pytest.raises(UnsafeCheckpointError, match=rf"best\.pt: refused to load.*{SYSTEM}") as error:
        validate(weights=path, data=data, imgsz=64, batch=2, workers=0, run_dir=tmp_path / "run")
    assert "weights_only" not in str(error.value)
    assert not marker.exists()


def test_a_refusal_inside_yolov5_code_is_translated(tmp_path: Path):
    """Any torch.load YOLOv5 makes under `yolov5_runtime` is refused with LightWeight's error too."""
    from tasks.yolo import yolov5_runtime

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _System(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=SYSTEM) as error, yolov5_runtime():
        torch.load(path, map_location="cpu")  # what YOLOv5's attempt_load and strip_optimizer call
    assert "weights_only" not in str(error.value)
    assert not marker.exists()
