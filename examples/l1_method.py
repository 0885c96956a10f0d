"""Worked example: a new pruning method in one file.

`l1-uniform` removes the same fraction of every prunable group, ranking a group's channels by the L1 norm
of its root layer's weight rows; the fraction is solved by bisection so the sparsity lands in the band.
Importing this module registers it:

    import examples.l1_method  # noqa: F401
    result = pruning.get_method("l1-uniform")(problem, 0.5, eps=0.01, seed=0)
"""
from __future__ import annotations

import torch

from pruning import (PruneResult, PruningProblem, finish, harden_widths, kept_widths, prepare, register_method,
                     solve_ratio)


def l1_order(problem: PruningProblem, labels: list[str]) -> dict[str, torch.Tensor]:
    """Channel indices of each group, smallest L1 row norm of its root layer first."""
    with torch.no_grad():
        return {label: torch.argsort(problem.model.get_submodule(label).weight.abs().sum(dim=1), stable=True)
                for label in labels}


@register_method("l1-uniform")
def l1_uniform(problem: PruningProblem, target: float, *, eps: float = 0.01, seed: int = 0,
               **options) -> PruneResult:
    """Uniform fraction per prunable group, L1-ranked channels, physically removed."""
    if options:
        raise ValueError(f"method 'l1-uniform' got unknown options {sorted(options)}; it takes none")
    ctx = prepare(problem, target, eps)

    def uniform(ratio: float) -> dict[str, float]:
        return {g.label: ratio for g in ctx.prunable}

    ratio = solve_ratio(lambda r: ctx.hard_sparsity(kept_widths(uniform(r), ctx.groups)), ctx, hi=problem.c_max)
    widths = kept_widths(uniform(ratio), ctx.groups)
    model, history = harden_widths(problem, ctx.groups, l1_order(problem, [g.label for g in ctx.groups]), widths)
    return finish(ctx, "l1-uniform", model, widths, uniform(ratio), history=history, info={"ratio": ratio})
