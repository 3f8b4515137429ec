"""The stage registry is the one source of truth: dvc.yaml, names, params sections and code deps agree with it."""

import ast
import copy
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from tasks.config import Params
from tasks.registry import (
    PLUMBING,
    PROJECT,
    StageError,
    code_files,
    declared_names,
    dvc_differences,
    import_closure,
    load_stage,
    stages,
    stages_from,
    stages_upto,
)

DVC_YAML = yaml.safe_load((PROJECT / "dvc.yaml").read_text())


def test_dvc_yaml_declares_every_stage_as_its_module_does():
    assert dvc_differences(DVC_YAML) == []
    assert list(DVC_YAML["stages"]) == [stage.name for stage in stages()]


def test_a_dependency_missing_from_dvc_yaml_is_named():
    edited = copy.deepcopy(DVC_YAML)
    edited["stages"]["crop"]["deps"].remove("tasks/boxes.py")
    assert dvc_differences(edited) == ["dvc.yaml stage 'crop': deps lacks tasks/boxes.py"]


def test_other_disagreements_are_named():
    edited = copy.deepcopy(DVC_YAML)
    edited["stages"]["val"]["params"].remove("model")
    edited["stages"]["detect"]["deps"].append("tasks/crop.py")
    del edited["stages"]["macs"]
    edited["stages"]["ghost"] = {"cmd": "lightweight run ghost"}
    assert sorted(dvc_differences(edited)) == [
        "dvc.yaml stage 'detect': deps has tasks/crop.py, which the stage does not use",
        "dvc.yaml stage 'ghost': no tasks/ghost.py declares it",
        "dvc.yaml stage 'val': params lacks model",
        "dvc.yaml: stage 'macs' is missing",
    ]


def test_the_cli_check_fails_on_a_copy_with_a_dependency_removed(tmp_path: Path):
    edited = copy.deepcopy(DVC_YAML)
    edited["stages"]["flow_report"]["deps"].remove("tasks/boxes.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(edited))
    result = CliRunner().invoke(app, ["dag", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "dvc.yaml stage 'flow_report': deps lacks tasks/boxes.py" in result.output
    assert CliRunner().invoke(app, ["dag"]).exit_code == 0


def test_one_name_everywhere():
    sections = set(Params.model_fields)
    for stage in stages():
        assert load_stage(stage.name) is stage
        assert stage.run.__module__ == f"tasks.{stage.name}"  # the function lives in the module named after it
        for key in stage.param_keys:
            assert key.split(".")[0] in sections, (stage.name, key)
        if stage.params is None:
            assert stage.name in sections


def test_code_deps_are_the_imports_transitively():
    assert code_files("crop") == [
        "tasks/boxes.py",
        "tasks/crop.py",
        "tasks/crop_index.py",
        "tasks/detections.py",
        "tasks/errors.py",
        "tasks/frames.py",
        "tasks/stage.py",
    ]
    # a reader of detections does not depend on the detector: no YOLOv5 adapter in crop or flow_report
    for name in ("crop", "flow_report", "classify"):
        assert not [f for f in code_files(name) if f.startswith("tasks/yolo") or f == "tasks/detect.py"], name
    assert "tasks/yolo/inference.py" in code_files("detect") and "tasks/yolo/training.py" in code_files("base")
    assert "tasks/finetune.py" in code_files("prune")  # iterative mode trains between steps


def test_plumbing_is_left_out_but_imported():
    closure = {p.relative_to(PROJECT).as_posix() for p in import_closure(PROJECT / "tasks" / "crop.py")}
    assert {"tasks/atomic.py", "tasks/layout.py", "tasks/config.py"} <= closure
    assert not set(code_files("crop")) & PLUMBING


def test_relative_and_function_level_imports_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "tasks"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .leaf import x\n")
    (package / "sub" / "leaf.py").write_text("x = 1\n")
    (package / "helper.py").write_text("y = 2\n")
    (package / "step.py").write_text("def run():\n    from tasks.helper import y\n    from tasks.sub import x\n")
    monkeypatch.setattr("tasks.registry.PROJECT", tmp_path)
    found = {p.relative_to(tmp_path).as_posix() for p in import_closure(package / "step.py")}
    assert found == {
        "tasks/step.py",
        "tasks/helper.py",
        "tasks/__init__.py",
        "tasks/sub/__init__.py",
        "tasks/sub/leaf.py",
    }


def test_stages_run_after_what_they_read():
    order = [stage.name for stage in stages()]
    for before, after in (
        ("demo_data", "base"),
        ("base", "prune"),
        ("prune", "finetune"),
        ("finetune", "detect"),
        ("detect", "crop"),
        ("crop", "classify"),
        ("classifier", "classify"),
        ("classify", "flow_report"),
        ("finetune", "val"),
    ):
        assert order.index(before) < order.index(after), (before, after)


def test_the_stages_from_detect_are_what_follows_it_and_what_they_need():
    names = [stage.name for stage in stages_from("detect")]
    assert {"detect", "classifier", "crop", "classify", "flow_report", "macs"} <= set(names)
    assert not {"demo_data", "base", "prune", "finetune", "val"} & set(names)


def test_the_stages_up_to_finetune_are_what_it_needs():
    assert [stage.name for stage in stages_upto("finetune")] == ["demo_data", "base", "prune", "finetune"]
    assert {stage.name for stage in stages_upto("classify")} >= {"detect", "crop", "classifier", "finetune"}


def test_an_unknown_stage_is_a_clear_error():
    with pytest.raises(StageError, match=r"no stage 'trak': stages are .*detect"):
        load_stage("trak")
    assert "detect" in declared_names()


def _racing_parse(monkeypatch: pytest.MonkeyPatch, message: str, times: int) -> list[str]:
    """ast.parse failing `times` times with SystemError(message) first, as CPython 3.11.7 does when another thread
    builds an AST at the same moment (gh-106905); the calls are recorded."""
    real, calls = ast.parse, []

    def parse(source, filename="<unknown>", *args, **kwargs):
        calls.append(filename)
        if len(calls) <= times:
            raise SystemError(message)
        return real(source, filename, *args, **kwargs)

    monkeypatch.setattr(ast, "parse", parse)
    return calls


def test_a_module_is_read_again_after_cpythons_ast_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "tasks"
    package.mkdir()
    (package / "step.py").write_text("import tasks.helper\n")
    (package / "helper.py").write_text("")
    monkeypatch.setattr("tasks.registry.PROJECT", tmp_path)
    calls = _racing_parse(monkeypatch, "AST constructor recursion depth mismatch (before=48, after=74)", times=1)
    found = {p.relative_to(tmp_path).as_posix() for p in import_closure(package / "step.py")}
    assert found == {"tasks/step.py", "tasks/helper.py"}
    assert calls[:2] == [str(package / "step.py")] * 2  # the same file, parsed again


def test_other_system_errors_of_the_parser_are_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "step.py").write_text("x = 1\n")
    monkeypatch.setattr("tasks.registry.PROJECT", tmp_path)
    calls = _racing_parse(monkeypatch, "something else", times=1)
    with pytest.raises(SystemError, match="something else"):
        import_closure(tmp_path / "tasks" / "step.py")
    assert len(calls) == 1
