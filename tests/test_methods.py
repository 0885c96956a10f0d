"""Every registered method on the TD-MPC-like model: registry, levels 0.1..0.9, latent option, input errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from pruning import count_macs, count_params, get_method, list_methods, measure_latency_ms, validate_target
from test_groups import TinyTOLD, ae_problem, told_problem, told_rollout

METHODS = ["torch-random", "torch-l2", "tp-random", "tp-magnitude", "grid", "grid-group", "gradient"]
FAST = {"grid": {"budget": 3}, "grid-group": {"budget": 3}, "gradient": {"steps": 20, "eval_every": 5}}
LEVELS = [round(0.1 * i, 1) for i in range(1, 10)]


def distillation_problem(**kwargs):
    """TinyTOLD with a distillation surrogate (outputs vs the dense model) and its negation as the metric."""
    dense = TinyTOLD()
    batches = [torch.randn(32, 6, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    with torch.no_grad():
        references = [told_rollout(dense, x)[:-1] for x in batches]

    def surrogate(model: nn.Module, step: int) -> torch.Tensor:
        i = 2 if step < 0 else step % 2
        return sum(nn.functional.mse_loss(o, r) for o, r in zip(told_rollout(model, batches[i])[:-1], references[i]))

    def metric(model: nn.Module) -> float:
        with torch.no_grad():
            return -float(surrogate(model, -1))

    return told_problem(dense, metric=metric, surrogate=surrogate, **kwargs)


@pytest.fixture(scope="module")
def problem():
    return distillation_problem()


def test_registry_lists_every_method_and_names_them_on_error():
    assert list_methods() == sorted(METHODS)
    with pytest.raises(ValueError, match=r"unknown pruning method 'magnitude'; valid methods: \['gradient'"):
        get_method("magnitude")


@pytest.mark.parametrize("method", METHODS)
def test_every_level_prunes_and_keeps_the_forward_working(problem, method):
    dense = count_params(problem.model)
    obs = torch.randn(3, 6)
    shapes = [o.shape for o in told_rollout(problem.model, obs)[:-1]]
    for target in LEVELS:
        result = get_method(method)(problem, target, eps=0.02, **FAST.get(method, {}))
        assert result.method == method and result.target == target
        assert result.in_band == (abs(result.achieved - target) <= 0.02 + 1e-12)
        assert abs(result.achieved - target) < 0.05
        assert result.params == (dense - round(result.achieved * dense))
        if not result.masked:
            assert result.params == count_params(result.model)
        assert [o.shape for o in told_rollout(result.model, obs)[:-1]] == shapes
        assert set(result.widths) == set(result.coefficients)


@pytest.mark.parametrize("method", METHODS)
def test_latent_kept_whole_when_not_prunable(method):
    problem = distillation_problem(latent_prunable=False)
    result = get_method(method)(problem, 0.5, eps=0.02, **FAST.get(method, {}))
    assert result.widths["encoder.2"] == 12
    assert result.coefficients["encoder.2"] == 0.0
    if not result.masked:
        assert result.model.encoder[2].out_features == result.model.dynamics[4].out_features == 12
    else:
        assert not hasattr(result.model.encoder[2], "weight_mask")


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_coefficients(problem, method):
    a, b = (get_method(method)(problem, 0.4, eps=0.02, seed=11, **FAST.get(method, {})) for _ in range(2))
    assert a.coefficients == b.coefficients and a.widths == b.widths


@pytest.mark.parametrize("target,eps,message", [
    (1.0, 0.01, r"target sparsity must lie in \[0, 1\)"),
    (-0.1, 0.01, r"target sparsity must lie in \[0, 1\)"),
    (0.5, 0.0, "eps must be > 0"),
])
def test_bad_targets_are_clear_errors(target, eps, message):
    with pytest.raises(ValueError, match=message):
        validate_target(target, eps)
    with pytest.raises(ValueError, match=message):
        get_method("tp-magnitude")(ae_problem(), target, eps=eps)


def test_unreachable_target_fails_before_any_work():
    calls = []
    problem = distillation_problem(latent_prunable=False, c_max=0.5)
    problem.metric = lambda m: calls.append(1) or 0.0
    with pytest.raises(ValueError, match=r"max reachable sparsity is 0\.\d+"):
        get_method("grid")(problem, 0.9, budget=3)
    assert calls == []


def test_macs_follow_the_traced_forward_and_shrink_with_physical_pruning(problem):
    obs = problem.example_inputs
    pruned = get_method("tp-magnitude")(problem, 0.7, eps=0.02).model
    dense_macs = count_macs(problem.model, obs, told_rollout)
    encoder_macs = count_macs(problem.model.encoder, obs)
    assert 6 * 24 + 24 * 12 <= encoder_macs < dense_macs  # per sample: weights plus bias/activation ops
    assert 0 < count_macs(pruned, obs, told_rollout) < 0.5 * dense_macs
    assert measure_latency_ms(pruned.encoder, obs, repeats=3) > 0
