"""The nightly-eval flow on a real (test) Prefect server: a baseline night, then a regression that fails the run."""

import json
from pathlib import Path

import pytest

from flows.nightly import nightly_eval
from tasks.layout import Layout
from tasks.nightly import NightlyRegression
from tests.flows.api import artifacts_of, task_states_of
from tests.flows.harness import local_prefect

pytestmark = pytest.mark.slow


def test_a_map50_drop_fails_the_run_with_an_alert_artifact(
    finetuned_project: Path, tmp_path_factory: pytest.TempPathFactory
):
    project = finetuned_project
    history = Layout(project).nightly_history
    storage = tmp_path_factory.mktemp("prefect-results")
    with local_prefect(storage):
        first = nightly_eval(root=project, return_state=True)
        assert first.is_completed(), first
        assert first.result()["passed"] is True and first.result()["map50"] >= 0
        assert task_states_of(first.state_details.flow_run_id) == {"revalidate": "Completed", "detect": "Completed"}
        assert set(artifacts_of(first.state_details.flow_run_id)) == {"nightly-summary"}
        [baseline] = json.loads(history.read_text())
        assert 0 <= baseline["map50"] <= 1 and baseline["passed"] and len(baseline["model_sha256"]) == 64
        video = next((project / "data" / "demo" / "videos").glob("*.mp4")).stem
        assert set(baseline["people_per_frame"]) == {video} and baseline["people_per_frame"][video] > 0

        # Pretend last night scored far better: tonight's (identical) model now reads as a 0.5 drop.
        baseline["map50"] += 0.5
        history.write_text(json.dumps([baseline]))
        second = nightly_eval(root=project, return_state=True)
        assert second.is_failed(), second
        assert "mAP50 fell from" in second.message and "nightly.max_map50_drop 0.02" in second.message
        with pytest.raises(NightlyRegression, match="mAP50 fell from"):
            second.result()
        found = artifacts_of(second.state_details.flow_run_id)
        assert set(found) == {"nightly-summary", "nightly-alert"}
        assert found["nightly-alert"].type == "markdown" and "mAP50 fell from" in found["nightly-alert"].data
        assert [night["passed"] for night in json.loads(history.read_text())] == [True, False]

        # Same mAP50 as the baseline, but last night counted twice as many people in the video.
        baseline["map50"] -= 0.5
        baseline["people_per_frame"][video] *= 2
        history.write_text(json.dumps([baseline]))
        third = nightly_eval(root=project, return_state=True)
        assert third.is_failed() and f"people_per_frame/{video} moved from" in third.message, third.message
        assert "mAP50" not in third.message


def test_no_model_yet_is_a_clear_error(tmp_path: Path):
    from tasks.nightly import NightlyError, revalidate
    from tests.conftest import TINY_VAL

    with pytest.raises(NightlyError, match=r"finetuned.pt: no fine-tuned model to evaluate; run the pipeline"):
        revalidate(TINY_VAL, tmp_path / "models" / "finetuned.pt", tmp_path / "data.yaml")
