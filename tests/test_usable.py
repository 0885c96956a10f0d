"""No method returns a model that cannot run: the forward check in `finish`, and grid skipping such candidates."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from pruning import PruningProblem, UnusableModelError, estimate_grid, get_method
from unseen_models import run_world, world_inputs, world_problem


def test_a_latent_cut_across_simnorm_groups_is_an_error_naming_the_group_and_the_fix():
    with pytest.raises(UnusableModelError, match=r"fails its forward pass .*dynamics\.3 \d+ of 48.*round_to"):
        get_method("tp-magnitude")(world_problem(), 0.2, eps=0.02)


def test_grid_skips_and_counts_candidates_that_cannot_run():
    problem = world_problem()
    result = get_method("grid")(problem, 0.2, eps=0.02, budget=40)
    assert result.in_band and result.info["skipped_unusable"] > 0
    assert result.evaluations == 40 - result.info["skipped_unusable"]
    assert result.widths["dynamics.3"] % 8 == 0
    z, rewards, values = run_world(result.model, world_inputs(123))
    assert torch.isfinite(rewards).all() and values.shape == (16, 2, 3)


def test_grid_has_a_default_budget_and_an_estimate_before_it_starts():
    problem = world_problem()
    estimate = estimate_grid(problem, 0.5, eps=0.02)
    assert estimate.axes == ["encoder", "dynamics", "latent", "reward", "q"]
    assert estimate.combinations == 10 ** 5 and estimate.exact
    assert estimate.in_band > 256 and estimate.evaluations == 256
    result = get_method("grid")(problem, 0.5, eps=0.02, step=0.3)
    small = estimate_grid(problem, 0.5, eps=0.02, step=0.3)
    assert result.info["in_band_candidates"] == small.in_band
    assert result.evaluations + result.info["skipped_unusable"] == small.evaluations


class _BatchNormMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_the_forward_check_leaves_batch_norm_statistics_and_the_rng_alone():
    torch.manual_seed(0)
    model = _BatchNormMLP().train()
    problem = PruningProblem(model, {"body": "body"}, ["body.3"], example_inputs=torch.randn(8, 6))
    before = model.body[1].running_mean.clone()
    state = torch.random.get_rng_state()
    result = get_method("tp-magnitude")(problem, 0.3, eps=0.05)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(model.body[1].running_mean, before)
    assert result.in_band
