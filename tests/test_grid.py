"""Grid searches: only in-band candidates reach the true metric, budgets and seeds are honoured."""
from __future__ import annotations

import pytest
import torch

from pruning import DEFAULT_BUDGET, count_params, get_method
from test_groups import ae_problem, told_problem, told_rollout


class CountingMetric:
    """A real task metric (negative distance of outputs to the dense model) that logs every call."""

    def __init__(self, dense: torch.nn.Module) -> None:
        self.x = torch.randn(32, 64, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            self.reference = dense(self.x)
        self.dense_params = count_params(dense)
        self.sparsities: list[float] = []
        self.scores: list[float] = []

    def score(self, model: torch.nn.Module) -> float:
        with torch.no_grad():
            return -float((model(self.x) - self.reference).pow(2).mean())

    def __call__(self, model: torch.nn.Module) -> float:
        self.sparsities.append(1 - count_params(model) / self.dense_params)
        self.scores.append(self.score(model))
        return self.scores[-1]


def counted_ae_problem() -> tuple:
    problem = ae_problem()
    metric = CountingMetric(problem.model)
    problem.metric = metric
    return problem, metric


@pytest.mark.parametrize("method", ["grid", "grid-group"])
def test_grid_evaluates_only_in_band_candidates(method):
    problem, metric = counted_ae_problem()
    result = get_method(method)(problem, 0.4, eps=0.02, budget=25)
    assert 0 < result.evaluations == len(metric.sparsities) <= 25
    assert all(abs(s - 0.4) <= 0.02 + 1e-12 for s in metric.sparsities)
    assert result.in_band
    assert result.info["best_metric"] == max(metric.scores) == metric.score(result.model)


def test_component_grid_shares_one_coefficient_per_component_plus_the_latent():
    problem, metric = counted_ae_problem()
    result = get_method("grid")(problem, 0.5, eps=0.02)
    assert result.info["axes"] == ["encoder", "latent", "decoder"]
    assert result.evaluations == result.info["in_band_candidates"] == len(metric.sparsities)
    c = result.coefficients
    assert c["encoder.0"] == c["encoder.2"] and c["decoder.0"] == c["decoder.2"]
    assert set(c.values()) <= set(result.info["levels"])
    assert metric.score(result.model) == max(metric.scores)


def test_grid_group_samples_large_grids_within_budget_and_is_seeded():
    problem = told_problem()
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(2))

    def metric(model: torch.nn.Module) -> float:
        with torch.no_grad():
            return float(sum(o.sum() for o in told_rollout(model, x)[:-1]))

    problem.metric = metric
    a, b = (get_method("grid-group")(problem, 0.5, eps=0.02, budget=6, seed=3) for _ in range(2))
    assert a.info["sampled"] and a.evaluations == 6
    assert a.coefficients == b.coefficients and a.widths == b.widths


def test_grid_needs_a_metric_and_a_budget_for_huge_grids():
    with pytest.raises(ValueError, match="needs problem.metric"):
        get_method("grid")(ae_problem(), 0.5)
    problem = told_problem(metric=lambda m: 0.0)
    with pytest.raises(ValueError, match="pass a budget"):
        get_method("grid")(problem, 0.5, max_enumerate=1000, budget=None)
    sampled = get_method("grid")(problem, 0.5, max_enumerate=1000)  # the default budget
    assert sampled.info["sampled"] and sampled.info["budget"] == DEFAULT_BUDGET
    with pytest.raises(ValueError, match=r"unknown options \['steps'\]"):
        get_method("grid")(problem, 0.5, steps=3)


def test_a_band_no_candidate_meets_is_reported_as_a_failure_without_evaluations():
    problem, metric = counted_ae_problem()
    result = get_method("grid")(problem, 0.5, eps=1e-6)
    assert not result.in_band and result.evaluations == 0 and metric.sparsities == []
    assert result.info["in_band_candidates"] == 0
    assert abs(result.achieved - 0.5) < 0.05  # the closest combination, honestly labelled
