"""Baselines: PyTorch's mask pruning and torch-pruning's uniform pruner, each solved into the band."""
from __future__ import annotations

import copy
import functools
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune
import torch_pruning as tp

from pruning.coefficients import free_unflatten_channels, leaves_channels, n_removed
from pruning.context import SearchContext, finish, measured_widths, prepare, solve_ratio
from pruning.groups import ROOT_TYPES, Group, Member, output_modules
from pruning.problem import PruningProblem
from pruning.registry import check_options, register_method
from pruning.result import PruneResult
from pruning.sparsity import out_axis, out_channels


def _uniform(ctx: SearchContext, ratio: float) -> dict[str, float]:
    return {g.label: (ratio if g.prunable else 0.0) for g in ctx.groups}


# --- torch.nn.utils.prune: masks on the output rows of every prunable hidden Linear -------------------

WEIGHT_MASK = ".weight_mask"
"""Suffix of the buffers in which `torch.nn.utils.prune` keeps a layer's weight mask."""


def weight_masks(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weight mask of each masked layer, by layer name, from a state dict or `dict(named_buffers())`."""
    return {key[: -len(WEIGHT_MASK)]: mask for key, mask in tensors.items() if key.endswith(WEIGHT_MASK)}


def refresh_masked_weights(model: nn.Module) -> nn.Module:
    """Recompute each masked layer's effective weight (mask x trained weight) outside autograd: after training,
    the weight `torch.nn.utils.prune` last computed still belongs to a training graph (such a model cannot be
    copied, and shows the weights of before the last step)."""
    with torch.no_grad():
        for layer in weight_masks(dict(model.named_buffers())):
            module = model.get_submodule(layer)
            module.weight = module.weight_orig * module.weight_mask
    return model


def _masked_layers(ctx: SearchContext) -> list[str]:
    return sorted({m.module for g in ctx.prunable for m in g.members if m.kind == "out"})


def _producers(ctx: SearchContext) -> dict[str, tuple[Group, Member]]:
    """Every masked layer with the group its output channels belong to and its share of that group."""
    return {m.module: (g, m) for g in ctx.prunable for m in g.members if m.kind == "out"}


def _block_mask(layer: nn.Module, member: Member, block: int, count: int, norm: bool) -> None:
    """Mask `count` output channels of `layer` in whole blocks of its group: the blocks of smallest L2 norm
    (norm) or random ones."""
    axis = out_axis(layer)
    blocks = torch.tensor(member.idxs).view(-1, block)
    if norm:
        rows = layer.weight.detach().movedim(axis, 0).flatten(1)
        scores = rows.pow(2).sum(1)[blocks].sum(1)
    else:
        scores = torch.rand(len(blocks))
    removed = blocks[torch.argsort(scores, stable=True)[:count // block]].flatten()
    mask = torch.ones_like(layer.weight).index_fill_(axis, removed, 0.0)
    torch_prune.custom_from_mask(layer, "weight", mask)


def _mask_copy(ctx: SearchContext, amount: float, norm: bool, seed: int) -> nn.Module:
    model = copy.deepcopy(ctx.problem.model)
    producers = _producers(ctx)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in _masked_layers(ctx):
            layer = model.get_submodule(name)
            group, member = producers[name]
            if group.block > 1:
                count = n_removed(amount, len(member.idxs), group.block)
                _block_mask(layer, member, group.block, count, norm)
                continue
            count = n_removed(amount, out_channels(layer))
            if norm:
                torch_prune.ln_structured(layer, "weight", amount=count, n=2, dim=out_axis(layer))
            else:
                torch_prune.random_structured(layer, "weight", amount=count, dim=out_axis(layer))
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
                    axis = out_axis(model.get_submodule(member.module))
                    alive |= mask.movedim(axis, 0).flatten(1).any(1)[list(member.idxs)]
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
    """Widths BasePruner leaves: int(n (1 - ratio)) per group, rounded down to a multiple of its block size
    (round_to); a group that would vanish is skipped."""
    widths = {}
    for g in ctx.groups:
        kept = int(g.width * (1 - ratio))
        kept -= kept % g.block
        widths[g.label] = kept if g.prunable and kept >= 1 else g.width
    return widths


def _tp_max_ratio(ctx: SearchContext) -> float:
    """Largest ratio (<= c_max) at which BasePruner still keeps one block of every prunable group."""
    return min([ctx.problem.c_max] + [1 - g.block / g.width - 1e-9 for g in ctx.prunable if g.width > g.block])


class BlockImportance(tp.importance.Importance):
    """Scores channels by the rank of their block: a block's score is the sum of `base`'s scores of its
    channels, and every channel of a block gets the same distinct rank, so BasePruner with `round_to` removes
    whole blocks. `blocks` maps each out-channel module of a grouped layer to (group channel index of each
    of its channels, block size)."""

    def __init__(self, base: tp.importance.Importance, blocks: dict[nn.Module, tuple[torch.Tensor, int]]) -> None:
        self.base, self.blocks = base, blocks

    def __call__(self, group: tp.Group) -> torch.Tensor | None:
        scores = self.base(group)
        module = group[0].dep.target.module
        if scores is None or module not in self.blocks:
            return scores
        channel_of, block = self.blocks[module]
        block_of = channel_of // block
        sums = torch.zeros(len(scores) // block).index_add_(0, block_of, scores.detach().float().cpu())
        rank = torch.empty(len(sums))
        rank[torch.argsort(sums, stable=True)] = torch.arange(len(sums), dtype=torch.float32)
        return rank[block_of].to(scores.device)


def _channel_of(member: Member) -> torch.Tensor:
    """Group channel index of each of the member's channels."""
    channel_of = torch.empty(len(member.idxs), dtype=torch.long)
    channel_of[torch.tensor(member.idxs)] = torch.arange(len(member.idxs))
    return channel_of


def _tp_prune(ctx: SearchContext, ratio: float, importance: str, seed: int) -> tuple[nn.Module, list]:
    """BasePruner at a uniform ratio, one pass per block size present (round_to = that size, the other
    groups left alone); a model without block sizes takes one plain pass."""
    model = copy.deepcopy(ctx.problem.model)
    scorer = (tp.importance.RandomImportance() if importance == "random"
              else tp.importance.GroupMagnitudeImportance(p=2))
    history: list = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for block in sorted({g.block for g in ctx.prunable}):
            passing = [g for g in ctx.groups if g.prunable and g.block == block]
            frozen = [m.module for g in ctx.groups if g not in passing for m in g.members if m.kind == "out"]
            ignored = output_modules(model, ctx.problem) + [model.get_submodule(name) for name in frozen]
            blocks = {model.get_submodule(m.module): (_channel_of(m), block)
                      for g in passing for m in g.members if m.kind == "out"}
            pruner = tp.pruner.BasePruner(model, ctx.problem.example_inputs,
                                          importance=scorer if block == 1 else BlockImportance(scorer, blocks),
                                          pruning_ratio=ratio, ignored_layers=ignored,
                                          round_to=block if block > 1 else None,
                                          root_module_types=ROOT_TYPES, forward_fn=ctx.problem.forward_fn)
            pruner.DG.check_pruning_group = functools.partial(leaves_channels, pruner.DG)  # Unflatten-aware
            pruner.step()
            history += [list(step) for step in pruner.pruning_history()]
    free_unflatten_channels(model)
    return model, history


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
