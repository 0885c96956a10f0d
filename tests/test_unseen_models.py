"""The pruning library on models it was not written for (tests/unseen_models.py): every method at two levels
returns a model that runs on new inputs, with block-respecting widths; the searches land in band, and the
soft-masked model they judge equals the pruned model they return."""
from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

from pruning import PruningProblem, SoftMasks, build_groups, get_method, list_methods, ranking
from unseen_models import (conv_ae_problem, mnist_images, pixel_problem, predictions, seeded, world_inputs,
                           world_problem)

FAST = {"gradient": {"steps": 10}, "grid": {"budget": 6}, "grid-group": {"budget": 6}}
"""Small budgets: the tests check behaviour, not search quality."""
BUILTIN = ["torch-random", "torch-l2", "tp-random", "tp-magnitude", "grid", "grid-group", "gradient"]


class Case:
    """One unseen model: how to build its problem, fresh inputs and what its outputs are judged by."""

    def __init__(self, build: Callable[[], PruningProblem], inputs: Callable[[], Any],
                 judged: Callable[[torch.nn.Module, Any], Any]) -> None:
        self.build, self.inputs, self.judged = build, inputs, judged


CASES = {
    "world-model": Case(lambda: world_problem(round_to={"latent": 8}), lambda: world_inputs(555), predictions),
    "conv-autoencoder": Case(conv_ae_problem, lambda: mnist_images(16, offset=500), lambda m, x: m(x)),
    "pixel-policy": Case(pixel_problem, lambda: seeded(555, 16, 3, 24, 24), lambda m, x: m(x)),
}


def _outputs(case: Case, model: torch.nn.Module) -> list[torch.Tensor]:
    with torch.no_grad():
        out = case.judged(model, case.inputs())
    return [out] if isinstance(out, torch.Tensor) else list(out)


@pytest.mark.parametrize("level", [0.2, 0.5])
@pytest.mark.parametrize("method", BUILTIN)
@pytest.mark.parametrize("name", list(CASES))
def test_every_method_returns_a_model_that_runs_with_block_widths(name, method, level):
    case = CASES[name]
    problem = case.build()
    result = get_method(method)(problem, level, eps=0.02, **FAST.get(method, {}))
    dense = _outputs(case, problem.model)
    pruned = _outputs(case, result.model)
    assert [o.shape for o in pruned] == [o.shape for o in dense]
    assert all(torch.isfinite(o).all() for o in pruned)
    blocks = {g.label: g.block for g in build_groups(problem)}
    assert all(width % blocks[label] == 0 for label, width in result.widths.items())
    if method in ("tp-magnitude", "grid", "gradient"):
        assert result.in_band, result


@pytest.mark.parametrize("method", ["grid", "gradient"])
@pytest.mark.parametrize("name", list(CASES))
def test_the_soft_masked_model_equals_the_pruned_result(name, method):
    case = CASES[name]
    problem = case.build()
    result = get_method(method)(problem, 0.5, eps=0.02, **FAST[method])
    groups = build_groups(problem)
    masks = SoftMasks(problem.model, groups, ranking(problem, groups, "taylor", seed=0))
    with masks, masks.pinned(result.widths):
        masked = _outputs(case, problem.model)
    for got, want in zip(masked, _outputs(case, result.model)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_the_builtin_methods_are_the_ones_tested():
    assert set(BUILTIN) <= set(list_methods())
