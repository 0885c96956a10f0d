"""Analytic parameter accounting against the true parameter count of physically pruned models."""
from __future__ import annotations

import pytest
import torch

from pruning import ParamModel, SoftMasks, build_groups, count_params, harden_widths, kept_widths, ranking, sparsity
from test_groups import ae_problem, told_problem

PROBLEMS = {"ae": ae_problem, "told": told_problem}


@pytest.mark.parametrize("name", PROBLEMS)
def test_dense_accounting_matches_the_model(name):
    problem = PROBLEMS[name]()
    params = ParamModel(problem.model, build_groups(problem))
    assert params.dense == count_params(problem.model)
    assert float(params.sparsity({})) == 0.0


@pytest.mark.parametrize("name", PROBLEMS)
def test_hard_accounting_equals_true_count_after_physical_removal(name):
    problem = PROBLEMS[name]()
    groups = build_groups(problem)
    params = ParamModel(problem.model, groups)
    order = ranking(problem, groups)
    generator = torch.Generator().manual_seed(1)
    for _ in range(4):
        widths = {g.label: int(torch.randint(1, g.width + 1, (1,), generator=generator)) for g in groups}
        pruned, _ = harden_widths(problem, groups, order, widths)
        assert params.hard_params(widths) == count_params(pruned)


def test_batched_accounting_matches_single_calls():
    problem = told_problem()
    groups = build_groups(problem)
    params = ParamModel(problem.model, groups)
    kept = torch.stack([torch.randint(1, g.width + 1, (5,)) for g in groups], 1)
    batch = params.params_batch(kept)
    for row, total in zip(kept, batch):
        assert int(total) == params.hard_params(dict(zip(params.labels, row.tolist())))


@pytest.mark.parametrize("name", PROBLEMS)
def test_soft_accounting_equals_hard_with_hard_masks(name):
    problem = PROBLEMS[name]()
    groups = build_groups(problem)
    params = ParamModel(problem.model, groups)
    coeffs = {g.label: 0.13 + 0.11 * i for i, g in enumerate(groups)}
    masks = SoftMasks(problem.model, groups, ranking(problem, groups), init=coeffs, temperature=0)
    hard = kept_widths(coeffs, groups)
    assert {k: int(v) for k, v in masks.expected_widths().items()} == hard
    masks.temperature = 1e-4  # nearly hard soft masks agree too
    soft = params.sparsity(masks.expected_widths()).detach()
    assert float(soft) == pytest.approx(float(params.sparsity(hard)), abs=1e-6)


def test_soft_sparsity_is_differentiable_and_grows_with_coefficients():
    problem = ae_problem()
    groups = build_groups(problem)
    params = ParamModel(problem.model, groups)
    masks = SoftMasks(problem.model, groups, ranking(problem, groups), init=0.4, temperature=0.05)
    params.sparsity(masks.expected_widths()).backward()
    assert all(float(c.grad) > 0 for c in masks.parameters())


def test_sparsity_formula():
    assert sparsity(1000, 250) == pytest.approx(0.75)
