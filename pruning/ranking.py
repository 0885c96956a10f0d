"""Within-group channel order (least important first), shared by every coefficient-based method."""
from __future__ import annotations

import copy
import warnings

import torch
import torch_pruning as tp

from pruning.groups import Group, dependency_graph, tp_group
from pruning.problem import PruningProblem

IMPORTANCES = ("taylor", "magnitude", "random")
TAYLOR_BATCHES = 8
"""Surrogate batches whose gradients are accumulated for the Taylor ranking."""


def ranking(problem: PruningProblem, groups: list[Group], importance: str = "magnitude",
            seed: int = 0) -> dict[str, torch.Tensor]:
    """Channel indices of every group, least important first; a group with a block size is ordered by whole
    blocks (the summed importance of a block's channels), its channels consecutive within each block.

    "taylor": application-specific: torch-pruning's GroupTaylorImportance (|weight x gradient| over all
    coupled parameters) of the task surrogate, accumulated over `TAYLOR_BATCHES` surrogate batches on a
    copy of the model; needs `problem.surrogate` with a non-zero gradient at the dense model (otherwise it
    falls back to "magnitude", with a warning: a distillation to the dense model has zero gradient there).
    "magnitude": torch-pruning's GroupMagnitudeImportance(p=2) over all coupled rows, columns and norms.
    "random": a permutation from a generator seeded with `seed` (the global RNG is left alone).
    """
    if importance == "random":
        generator = torch.Generator().manual_seed(seed)
        return {g.label: _channels(torch.randperm(g.width // g.block, generator=generator), g.block)
                for g in groups}
    if importance not in IMPORTANCES:
        raise ValueError(f"unknown importance {importance!r}; valid choices: {list(IMPORTANCES)}")
    if importance == "taylor" and problem.surrogate is not None:
        taylor = _taylor_ranking(problem, groups)
        if taylor is not None:
            return taylor
        warnings.warn("the surrogate has zero gradient at the dense model (a distillation to the model "
                      "itself?), so Taylor importance is undefined; ranking by magnitude instead", stacklevel=2)
    dg = dependency_graph(problem.model, problem)
    scorer = tp.importance.GroupMagnitudeImportance(p=2)
    with torch.no_grad():
        return {g.label: block_order(scorer(tp_group(dg, g)), g.block) for g in groups}


def _taylor_ranking(problem: PruningProblem, groups: list[Group]) -> dict[str, torch.Tensor] | None:
    """Taylor ranking, or None when every gradient vanishes (the ranking would be the index order)."""
    model = copy.deepcopy(problem.model).requires_grad_(True)
    dg = dependency_graph(model, problem)
    with torch.enable_grad():
        for step in range(TAYLOR_BATCHES):
            problem.surrogate(model, step).backward()
    if all(p.grad is None or not p.grad.any() for p in model.parameters()):
        return None
    scorer = tp.importance.GroupTaylorImportance()
    with torch.no_grad():
        return {g.label: block_order(scorer(tp_group(dg, g)), g.block) for g in groups}


def block_order(scores: torch.Tensor, block: int = 1) -> torch.Tensor:
    """Channel indices by ascending score, in whole blocks of `block` consecutive channels ranked by their
    summed scores (block 1: a stable argsort of the scores)."""
    if block == 1:
        return torch.argsort(scores, stable=True)
    return _channels(torch.argsort(scores.view(-1, block).sum(1), stable=True), block)


def _channels(blocks: torch.Tensor, block: int) -> torch.Tensor:
    """Channel indices of whole blocks, in the order of the block indices given."""
    return (blocks[:, None] * block + torch.arange(block)).flatten()
