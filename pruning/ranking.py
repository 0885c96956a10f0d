"""Within-group channel order (least important first), shared by every coefficient-based method."""
from __future__ import annotations

import torch
import torch_pruning as tp

from pruning.groups import Group, dependency_graph, tp_group
from pruning.problem import PruningProblem

IMPORTANCES = ("magnitude", "random")


def ranking(problem: PruningProblem, groups: list[Group], importance: str = "magnitude",
            seed: int = 0) -> dict[str, torch.Tensor]:
    """Channel indices of every group, least important first.

    "magnitude": torch-pruning's GroupMagnitudeImportance(p=2) over all coupled rows, columns and norms.
    "random": a permutation from a generator seeded with `seed` (the global RNG is left alone).
    """
    if importance == "random":
        generator = torch.Generator().manual_seed(seed)
        return {g.label: torch.randperm(g.width, generator=generator) for g in groups}
    if importance != "magnitude":
        raise ValueError(f"unknown importance {importance!r}; valid choices: {list(IMPORTANCES)}")
    dg = dependency_graph(problem.model, problem)
    scorer = tp.importance.GroupMagnitudeImportance(p=2)
    with torch.no_grad():
        return {g.label: torch.argsort(scorer(tp_group(dg, g)), stable=True) for g in groups}
