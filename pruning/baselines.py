"""Baselines: PyTorch's mask pruning and torch-pruning's uniform pruner, each solved into the band."""
from __future__ import annotations

import copy
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune
import torch_pruning as tp

from pruning.coefficients import n_removed
from pruning.context import SearchContext, finish, measured_widths, prepare, solve_ratio
from pruning.groups import output_modules
from pruning.problem import PruningProblem
from pruning.registry import check_options, register_method
from pruning.result import PruneResult


def _uniform(ctx: SearchContext, ratio: float) -> dict[str, float]:
    return {g.label: (ratio if g.prunable else 0.0) for g in ctx.groups}


# --- torch.nn.utils.prune: masks on the output rows of every prunable hidden Linear -------------------

WEIGHT_MASK = ".weight_mask"
"""Suffix of the buffers in which `torch.nn.utils.prune` keeps a layer's weight mask."""


def weight_masks(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weight mask of each masked layer, by layer name, from a state dict or `dict(named_buffers())`."""
    return {key[: -len(WEIGHT_MASK)]: mask for key, mask in tensors.items() if key.endswith(WEIGHT_MASK)}


def _masked_layers(ctx: SearchContext) -> list[str]:
    return sorted({m.module for g in ctx.prunable for m in g.members if m.kind == "out"})


def _mask_copy(ctx: SearchContext, amount: float, norm: bool, seed: int) -> nn.Module:
    model = copy.deepcopy(ctx.problem.model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in _masked_layers(ctx):
            layer = model.get_submodule(name)
            count = n_removed(amount, layer.weight.shape[0])
            if norm:
                torch_prune.ln_structured(layer, "weight", amount=count, n=2, dim=0)
            else:
                torch_prune.random_structured(layer, "weight", amount=count, dim=0)
    return model


def effective_widths(model: nn.Module, ctx: SearchContext) -> dict[str, int]:
    """Channels of each group still alive in at least one producer (a row not zeroed by its mask).

    With one producer per group (every hidden width, the AE latent) this is exact. The TD-MPC latent has
    two producers (encoder and dynamics outputs) masked independently: a channel counts as removed only
    when both zero it, so the zeroed rows of the other producer are still counted (conservative).
    """
    widths = {}
    for group in ctx.groups:
        alive = torch.zeros(group.width, dtype=torch.bool)
        for member in group.members:
            if member.kind == "out":
                mask = getattr(model.get_submodule(member.module), "weight_mask", None)
                if mask is None:
                    alive[:] = True
                else:
                    alive |= mask.any(dim=1)[list(member.idxs)]
        widths[group.label] = int(alive.sum())
    return widths


def _torch_masks(problem: PruningProblem, target: float, eps: float, seed: int, options: dict,
                 method: str, norm: bool) -> PruneResult:
    check_options(method, options, [])
    ctx = prepare(problem, target, eps)

    def probe(amount: float) -> float:
        return ctx.hard_sparsity(effective_widths(_mask_copy(ctx, amount, norm, seed), ctx))

    amount = solve_ratio(probe, ctx, hi=ctx.problem.c_max)
    model = _mask_copy(ctx, amount, norm, seed)
    return finish(ctx, method, model, effective_widths(model, ctx), _uniform(ctx, amount), masked=True,
                  info={"amount": amount, "masked_layers": _masked_layers(ctx)})


@register_method("torch-random")
def torch_random(problem: PruningProblem, target: float, *, eps: float = 0.01, seed: int = 0,
                 **options) -> PruneResult:
    """torch.nn.utils.prune.random_structured on every prunable hidden Linear, amount solved into the band."""
    return _torch_masks(problem, target, eps, seed, options, "torch-random", norm=False)


@register_method("torch-l2")
def torch_l2(problem: PruningProblem, target: float, *, eps: float = 0.01, seed: int = 0,
             **options) -> PruneResult:
    """torch.nn.utils.prune.ln_structured(n=2) on every prunable hidden Linear, amount solved into the band."""
    return _torch_masks(problem, target, eps, seed, options, "torch-l2", norm=True)


# --- torch-pruning BasePruner with a uniform ratio, physical removal -----------------------------------

def _tp_widths(ctx: SearchContext, ratio: float) -> dict[str, int]:
    """Widths BasePruner leaves: int(n (1 - ratio)) per group; a group that would vanish is skipped."""
    widths = {}
    for g in ctx.groups:
        kept = int(g.width * (1 - ratio))
        widths[g.label] = kept if g.prunable and kept >= 1 else g.width
    return widths


def _tp_max_ratio(ctx: SearchContext) -> float:
    """Largest ratio (<= c_max) at which BasePruner still keeps one channel of every prunable group."""
    return min([ctx.problem.c_max] + [1 - 1 / g.width - 1e-9 for g in ctx.prunable if g.width > 1])


def _tp_prune(ctx: SearchContext, ratio: float, importance: str, seed: int) -> tuple[nn.Module, list]:
    model = copy.deepcopy(ctx.problem.model)
    frozen = [m.module for g in ctx.groups if not g.prunable for m in g.members if m.kind == "out"]
    ignored = output_modules(model, ctx.problem) + [model.get_submodule(name) for name in frozen]
    scorer = (tp.importance.RandomImportance() if importance == "random"
              else tp.importance.GroupMagnitudeImportance(p=2))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pruner = tp.pruner.BasePruner(model, ctx.problem.example_inputs, importance=scorer,
                                      pruning_ratio=ratio, ignored_layers=ignored,
                                      root_module_types=[nn.Linear], forward_fn=ctx.problem.forward_fn)
        pruner.step()
    return model, [list(step) for step in pruner.pruning_history()]


def _torch_pruning(problem: PruningProblem, target: float, eps: float, seed: int, options: dict,
                   method: str, importance: str) -> PruneResult:
    check_options(method, options, [])
    ctx = prepare(problem, target, eps)
    ratio = solve_ratio(lambda r: ctx.hard_sparsity(_tp_widths(ctx, r)), ctx, hi=_tp_max_ratio(ctx))
    model, history = _tp_prune(ctx, ratio, importance, seed)
    return finish(ctx, method, model, measured_widths(model, ctx.groups), _uniform(ctx, ratio),
                  history=history, info={"pruning_ratio": ratio})


@register_method("tp-random")
def tp_random(problem: PruningProblem, target: float, *, eps: float = 0.01, seed: int = 0,
              **options) -> PruneResult:
    """torch-pruning BasePruner with RandomImportance (seeded), uniform ratio solved into the band."""
    return _torch_pruning(problem, target, eps, seed, options, "tp-random", "random")


@register_method("tp-magnitude")
def tp_magnitude(problem: PruningProblem, target: float, *, eps: float = 0.01, seed: int = 0,
                 **options) -> PruneResult:
    """torch-pruning BasePruner with GroupMagnitudeImportance(p=2), uniform ratio solved into the band."""
    return _torch_pruning(problem, target, eps, seed, options, "tp-magnitude", "magnitude")
