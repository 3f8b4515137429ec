from pathlib import Path

import pytest
import yaml

from tasks.config import ConfigError, Params, knob_overrides, load_params

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_repository_params_are_valid_and_match_the_defaults():
    assert load_params(REPO / "params.yaml") == Params()


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"base\.epoch: unknown key"):
        load_params(write(tmp_path, {"base": {"epoch": 3}}))


def test_unknown_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"prun: unknown key"):
        load_params(write(tmp_path, {"prun": {"ratio": 0.5}}))


def test_out_of_range_value_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"demo_data\.train_images: Input should be greater than or equal to 1"):
        load_params(write(tmp_path, {"demo_data": {"train_images": 0}}))


@pytest.mark.parametrize("interval", [0, -5])
def test_detect_interval_below_one_is_named(tmp_path, interval):
    with pytest.raises(ConfigError, match=r"detect\.interval: Input should be greater than or equal to 1"):
        load_params(write(tmp_path, {"detect": {"interval": interval}}))


def test_every_bad_key_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_params(write(tmp_path, {"base": {"imgsz": 100, "epochs": -1}}))
    assert "base.imgsz" in str(error.value) and "base.epochs" in str(error.value)


def test_missing_user_weights_are_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"model: .*weights: file not found: nowhere/best\.pt"):
        load_params(write(tmp_path, {"model": {"weights": "nowhere/best.pt"}}))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="parameter file not found"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("demo_data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_params(write(tmp_path, [1, 2]))


def test_overrides_apply_dotted_keys_and_are_validated(tmp_path):
    path = write(tmp_path, {"base": {"epochs": 3}})
    assert load_params(path, {"base.epochs": 5}).base.epochs == 5
    assert load_params(path, {"demo_data.seed": 9}).demo_data.seed == 9
    with pytest.raises(ConfigError, match=r"base\.epochs"):
        load_params(path, {"base.epochs": 0})
    with pytest.raises(ConfigError, match=r"expected SECTION\.KEY"):
        load_params(path, {"epochs": 5})


def test_params_are_frozen():
    params = Params()
    with pytest.raises(ValueError):
        params.base.epochs = 3  # type: ignore[misc]


def test_flat_deployment_knobs_become_dotted_overrides():
    assert knob_overrides(prune_ratio=0.4, finetune_epochs=None, prune_round_to=16) == {
        "prune.ratio": 0.4,
        "prune.round_to": 16,
    }
    with pytest.raises(ConfigError, match=r"parameter 'ratio': expected SECTION_KEY, e.g. prune_ratio"):
        knob_overrides(ratio=0.4)


def test_fine_tuning_between_steps_needs_several_steps(tmp_path):
    with pytest.raises(ConfigError, match=r"finetune\.epochs_per_step=3 .*set prune\.iterative_steps > 1"):
        load_params(write(tmp_path, {"prune": {"iterative_steps": 1}, "finetune": {"epochs_per_step": 3}}))


def test_fine_tuning_between_steps_refuses_global_ranking(tmp_path):
    params = {"prune": {"iterative_steps": 3, "global_ranking": True}, "finetune": {"epochs_per_step": 2}}
    with pytest.raises(ConfigError, match=r"prune\.global_ranking cannot be combined with finetune\.epochs_per_step"):
        load_params(write(tmp_path, params))


def test_step_training_takes_its_epochs_from_epochs_per_step(tmp_path):
    iterative = {"prune": {"iterative_steps": 3}, "finetune": {"epochs": 40, "epochs_per_step": 5}}
    params = load_params(write(tmp_path, iterative))
    step = params.step_training()
    assert step is not None and step.epochs == 5 and step.imgsz == params.finetune.imgsz
    assert load_params(write(tmp_path, {"prune": {"iterative_steps": 3}})).step_training() is None


def test_min_channels_must_keep_yaml_widths(tmp_path):
    with pytest.raises(ConfigError, match=r"prune: min_channels=12 must be a multiple of round_to=8"):
        load_params(write(tmp_path, {"prune": {"min_channels": 12}}))


def test_early_stopping_needs_validation_every_epoch(tmp_path):
    with pytest.raises(ConfigError, match=r"finetune: patience=5 stops on validation results, which noval=true skips"):
        load_params(write(tmp_path, {"finetune": {"patience": 5}}))
    assert load_params(write(tmp_path, {"finetune": {"patience": 5, "noval": False}})).finetune.patience == 5
