"""Baselines: PyTorch mask pruning and torch-pruning's uniform pruner, solved into the sparsity band."""
from __future__ import annotations

import pytest
import torch

from pruning import build_groups, count_params, get_method, weight_masks
from test_groups import told_problem, told_rollout

LEVELS = [round(0.1 * i, 1) for i in range(1, 10)]


@pytest.fixture(scope="module")
def problem():
    return told_problem()


@pytest.mark.parametrize("method", ["tp-random", "tp-magnitude"])
def test_torch_pruning_removes_channels_physically_at_every_level(problem, method):
    dense = count_params(problem.model)
    for target in LEVELS:
        result = get_method(method)(problem, target, eps=0.02)
        assert not result.masked and result.history
        assert result.params == count_params(result.model) < dense
        assert result.achieved == pytest.approx(1 - result.params / dense)
        assert result.in_band == (abs(result.achieved - target) <= 0.02)
        assert abs(result.achieved - target) < 0.05
        assert result.widths["encoder.0"] == result.model.encoder[0].out_features
        told_rollout(result.model, torch.randn(3, 6))


@pytest.mark.parametrize("method", ["torch-random", "torch-l2"])
def test_torch_masks_zero_rows_and_count_effective_sparsity(problem, method):
    for target in LEVELS:
        result = get_method(method)(problem, target, eps=0.02)
        assert result.masked and result.history == []
        assert count_params(result.model) == count_params(problem.model)  # masks only, nothing removed
        hidden = result.model.dynamics[0]
        assert int((hidden.weight.abs().sum(1) > 0).sum()) == result.widths["dynamics.0"]
        assert abs(result.achieved - target) < 0.05
        told_rollout(result.model, torch.randn(3, 6))


def test_weight_masks_lists_every_masked_layer(problem):
    result = get_method("torch-l2")(problem, 0.5, eps=0.02)
    masks = weight_masks(result.model.state_dict())
    assert sorted(masks) == result.info["masked_layers"]
    assert all(torch.equal(mask, result.model.get_submodule(layer).weight_mask) for layer, mask in masks.items())
    assert weight_masks(problem.model.state_dict()) == {}


def test_torch_l2_masks_the_smallest_rows():
    problem = told_problem()
    result = get_method("torch-l2")(problem, 0.5, eps=0.02)
    layer, dense = result.model.q1[3], problem.model.q1[3]
    norms = dense.weight.norm(dim=1)
    zeroed = layer.weight.abs().sum(1) == 0
    assert zeroed.any() and norms[zeroed].max() <= norms[~zeroed].min()


@pytest.mark.parametrize("method", ["torch-random", "tp-random"])
def test_random_baselines_are_seeded(problem, method):
    a, b, c = (get_method(method)(problem, 0.5, eps=0.02, seed=s) for s in (1, 1, 2))
    first = lambda r: r.model.pi[0].weight_mask if r.masked else r.model.pi[0].weight  # noqa: E731
    assert torch.equal(first(a), first(b))
    assert a.coefficients == b.coefficients
    assert not (first(a).shape == first(c).shape and torch.equal(first(a), first(c)))


def test_uniform_baselines_spare_output_layers(problem):
    for method in ["torch-l2", "tp-magnitude"]:
        model = get_method(method)(problem, 0.6, eps=0.02).model
        assert model.reward[4].out_features == 1 and model.pi[4].out_features == 2
        if method == "torch-l2":
            assert not hasattr(model.pi[4], "weight_mask")
    assert len(build_groups(problem)) == 12
