"""Convolutions as groups: the right weight axes per layer type, Flatten / Unflatten couplings mapped to
channel blocks, grouped convolutions kept whole, exact parameter accounting and fewer MACs."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from pruning import (ParamModel, PruningProblem, build_groups, count_macs, count_params, get_method, harden_widths,
                     n_removed, ranking)
from pruning.groups import _mapped
from unseen_models import conv_ae_problem, pixel_problem, seeded


def _by_label(problem: PruningProblem) -> dict:
    return {g.label: g for g in build_groups(problem)}


def test_conv_channels_root_groups_and_flatten_maps_each_channel_to_its_features():
    groups = _by_label(conv_ae_problem())
    assert set(groups) == {"encoder.0", "encoder.2", "encoder.5", "decoder.0", "decoder.3"}
    flattened = groups["encoder.2"]
    consumer = next(m for m in flattened.members if m.module == "encoder.5")
    assert flattened.width == 32 and len(consumer.idxs) == 32 * 49 and flattened.block == 1
    assert consumer.group_channels()[:49] == (0,) * 49 and consumer.group_channels()[49] == 1


def test_linear_unflatten_onto_conv_channels_is_a_group_of_whole_blocks():
    group = _by_label(conv_ae_problem())["decoder.0"]
    transposed = next(m for m in group.members if m.module == "decoder.3")
    assert group.width == 1568 and group.block == 49  # 1568 features onto 32 channels
    assert transposed.idxs == tuple(range(32)) and transposed.kind == "in"
    assert _by_label(conv_ae_problem(round_to={"decoder.0": 2}))["decoder.0"].block == 98


def test_a_mapping_that_is_neither_one_to_one_nor_blocks_is_refused():
    with pytest.raises(NotImplementedError, match="neither one to one nor whole blocks"):
        _mapped([0, 1, 0, 1], [0, 1, 2, 3], 4, "layer", "group")  # interleaved, not consecutive blocks
    assert _mapped([0, 0, 1, 1], [0, 1, 2, 3], 4, "layer", "group") == ((0, 1), (0, 2), 2)


@pytest.mark.parametrize("build", [conv_ae_problem, pixel_problem])
def test_parameter_accounting_is_exact_for_convolutions(build):
    problem = build()
    groups = build_groups(problem)
    params = ParamModel(problem.model, groups)
    assert params.dense == count_params(problem.model)
    order = ranking(problem, groups, "magnitude")
    for c in (0.3, 0.6):
        widths = {g.label: g.width - n_removed(c, g.width, g.block) for g in groups}
        pruned, _ = harden_widths(problem, groups, order, widths)
        assert params.hard_params(widths) == count_params(pruned)
        assert count_macs(pruned, problem.example_inputs) < count_macs(problem.model, problem.example_inputs)


def test_transposed_convolutions_are_pruned_on_their_output_axis():
    problem = conv_ae_problem()
    result = get_method("tp-magnitude")(problem, 0.5, eps=0.02)
    layer = result.model.decoder[3]
    assert layer.weight.shape[:2] == (result.widths["decoder.0"] // 49, result.widths["decoder.3"])
    masked = get_method("torch-l2")(problem, 0.5, eps=0.02).model.decoder[3]
    outputs_zeroed = (masked.weight_mask.amax(dim=(0, 2, 3)) == 0).sum()  # axis 1 holds the outputs
    assert 0 < outputs_zeroed < 16 and (masked.weight_mask.amax(dim=(1, 2, 3)) == 1).all()


def test_a_depthwise_convolution_shares_its_producers_group():
    group = _by_label(pixel_problem())["encoder.3"]
    kinds = {m.module: m.kind for m in group.members}
    assert kinds == {"encoder.0": "out", "encoder.1": "norm", "encoder.3": "norm", "encoder.5": "in"}


class _GroupedConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.ReLU(),
                                  nn.Conv2d(8, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_groups_touching_a_grouped_convolution_are_kept_whole():
    torch.manual_seed(0)
    problem = PruningProblem(_GroupedConvNet(), {"body": "body"}, ["body.7"], example_inputs=seeded(1, 4, 3, 10, 10))
    groups = _by_label(problem)
    assert not groups["body.0"].prunable and not groups["body.2"].prunable and groups["body.4"].prunable
    assert ParamModel(problem.model, list(groups.values())).dense == count_params(problem.model)
    result = get_method("tp-magnitude")(problem, 0.1, eps=0.05)
    assert result.widths["body.0"] == 8 and result.widths["body.4"] < 6
    assert result.model(seeded(2, 3, 3, 10, 10)).shape == (3, 2)
