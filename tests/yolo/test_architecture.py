"""The rewritten yaml rebuilds a pruned YOLOv5 exactly, for n and s at several ratios."""

import copy

import pytest
import torch
from torch import nn
from yolov5.models.yolo import DetectionModel

from tasks.pruning import kept_channels, prunable_convs, prune_structured, prune_to_widths
from tasks.yolo.architecture import build_model, pruned_yaml, same_architecture, width_rules
from tests.conftest import stock_yaml

_FRESH: dict[tuple[str, int], nn.Module] = {}


def fresh(name: str, nc: int) -> nn.Module:
    if (name, nc) not in _FRESH:
        _FRESH[(name, nc)] = DetectionModel(stock_yaml(f"yolov5{name}.yaml"), nc=nc).eval()
    return copy.deepcopy(_FRESH[(name, nc)])


def prune(model: nn.Module, ratio: float, **options) -> nn.Module:
    return prune_structured(model, torch.zeros(1, 3, 128, 128), ratio=ratio, rules=width_rules(model), **options)


@pytest.mark.parametrize(
    ("name", "nc", "ratio", "options"),
    [
        ("n", 1, 0.2, {}),
        ("n", 1, 0.37, {}),
        ("n", 80, 0.5, {}),
        ("n", 1, 0.5, {"global_ranking": True}),
        ("n", 1, 0.5, {"importance": "bn_scale"}),
        ("s", 1, 0.37, {}),
        ("s", 80, 0.7, {}),
        ("s", 1, 0.5, {"global_ranking": True, "importance": "l1"}),
        ("n", 1, 0.7, {"min_channels": 8}),
        ("s", 1, 0.8, {"min_channels": 16}),
    ],
)
def test_yaml_rebuilds_the_pruned_network_exactly(name: str, nc: int, ratio: float, options: dict):
    model = prune(fresh(name, nc), ratio, **options)
    rebuilt = build_model(pruned_yaml(model), nc=nc)
    assert same_architecture(model, rebuilt)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    image = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(image)[0], rebuilt.eval()(image)[0])


def test_widths_follow_the_rules_yolov5_needs():
    model = prune(fresh("n", 1), 0.5, global_ranking=True)
    rules = width_rules(model)
    for convs in rules.equal:  # C3 cv1, cv2 and bottleneck convs share one width
        assert len({conv.out_channels for conv in convs}) == 1
    for conv in rules.halve_input:  # SPPF hidden = input // 2
        assert conv.out_channels == conv.in_channels // 2
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module not in model.model[-1].m:
            assert module.out_channels % 8 == 0 or module in rules.halve_input
    assert [conv.out_channels for conv in model.model[-1].m] == [3 * (1 + 5)] * 3  # head untouched


def test_yaml_keeps_the_stock_syntax():
    yaml_dict = pruned_yaml(prune(fresh("n", 1), 0.5))
    assert yaml_dict["depth_multiple"] == 1.0 and yaml_dict["width_multiple"] == 1.0
    assert yaml_dict["anchors"] == fresh("n", 1).yaml["anchors"]
    assert yaml_dict["backbone"][0] == [-1, 1, "Conv", [8, 6, 2, 2]]
    assert yaml_dict["head"][-1][2:] == ["Detect", ["nc", "anchors"]]
    c3 = yaml_dict["backbone"][4]  # yolov5n layer 4: C3 with 2 bottlenecks at depth 0.33
    assert c3[1] == 2 and c3[2] == "C3" and c3[3][0] == 32


def test_min_channels_floors_every_prunable_layer():
    model = prune(fresh("n", 1), 0.7, min_channels=8)
    widths = [conv.out_channels for conv in prunable_convs(model, width_rules(model)).values()]
    assert min(widths) == 8 and model.model[0].conv.out_channels == 8
    assert model.model[7].conv.out_channels == kept_channels(256, 0.7, 8)  # wide layers keep the ratio


def test_step_by_step_exact_widths_end_where_one_shot_pruning_does():
    one_shot = prune(fresh("n", 1), 0.5)
    model = fresh("n", 1)
    widths = {name: conv.out_channels for name, conv in prunable_convs(model, width_rules(model)).items()}
    for ratio in (0.25, 0.5):
        targets = {name: kept_channels(width, ratio, 8) for name, width in widths.items()}
        prune_to_widths(model, torch.zeros(1, 3, 128, 128), targets, rules=width_rules(model))
        assert all(
            conv.out_channels == targets[name] for name, conv in prunable_convs(model, width_rules(model)).items()
        )
        rebuilt = build_model(pruned_yaml(model), nc=1)
        assert same_architecture(model, rebuilt)
    assert same_architecture(model, one_shot)


def test_unknown_layer_names_are_refused():
    model = fresh("n", 1)
    with pytest.raises(ValueError, match=r"no such layers to prune: model\.99\.conv"):
        prune_to_widths(model, torch.zeros(1, 3, 128, 128), {"model.99.conv": 8}, rules=width_rules(model))
