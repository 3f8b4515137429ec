"""A project folder as the pipeline leaves it, without running the pipeline: demo data and a fine-tuned model."""

import shutil
from pathlib import Path

import pytest
import yaml

from tasks.layout import Layout
from tests.conftest import tiny_params


@pytest.fixture
def finetuned_project(tmp_path: Path, tiny_demo: Path, trained_checkpoint: Path) -> Path:
    """Tiny params.yaml, data/demo and models/finetuned.pt (any trained checkpoint serves for evaluation)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    layout = Layout(project)
    shutil.copytree(tiny_demo, layout.demo_data)
    layout.finetuned_weights.parent.mkdir(parents=True)
    shutil.copy(trained_checkpoint, layout.finetuned_weights)
    return project
