"""Pruning coefficients: hard kept widths, physical removal, and differentiable soft channel masks."""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Iterator, Mapping

import torch
import torch.nn as nn
import torch_pruning as tp

from pruning.groups import Group, dependency_graph, tp_group
from pruning.problem import PruningProblem


def n_removed(c: float, width: int, block: int = 1) -> int:
    """Channels to remove: round(c * width / block) whole blocks (ties round down), leaving at least one."""
    blocks = width // block
    return block * min(blocks - 1, max(0, math.ceil(c * blocks - 0.5)))


def kept_widths(coeffs: Mapping[str, float], groups: list[Group]) -> dict[str, int]:
    """Kept width n_g - round(c_g n_g) (>= one block, a multiple of the block) per group; unprunable or
    unlisted groups stay whole."""
    return {g.label: g.width - (n_removed(float(coeffs.get(g.label, 0.0)), g.width, g.block) if g.prunable else 0)
            for g in groups}


def coefficients_for(widths: Mapping[str, int], groups: list[Group]) -> dict[str, float]:
    """The coefficients c_g = (n_g - k_g) / n_g that harden to exactly these kept widths."""
    return {g.label: (g.width - widths.get(g.label, g.width)) / g.width for g in groups}


Replacement = dict[str, tuple[list[int], list[float]]]
"""Consumer layer -> (input indices of removed channels, the mean value each of those inputs is replaced by)."""


def consumer_means(problem: PruningProblem, groups: list[Group]) -> dict[str, torch.Tensor]:
    """Mean input vector of every layer that consumes a prunable group, on the dense model: over the
    surrogate's first batch (the data the searches judge by), or the example inputs without a surrogate."""
    model = copy.deepcopy(problem.model)
    consumers = {m.module for g in groups if g.prunable for m in g.members if m.kind == "in"}
    convolutions = sorted(name for name in consumers if not isinstance(model.get_submodule(name), nn.Linear))
    if convolutions:
        raise NotImplementedError(f"mean replacement folds removed inputs into Linear biases only; "
                                  f"{convolutions} are not Linear")
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple) -> None:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1])
            sums[name] = sums.get(name, 0) + x.sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        return hook

    handles = [model.get_submodule(name).register_forward_pre_hook(record(name)) for name in consumers]
    try:
        with torch.no_grad():
            if problem.surrogate is not None:
                problem.surrogate(model, 0)
            elif problem.forward_fn is not None:
                problem.forward_fn(model, problem.example_inputs)
            else:
                model(problem.example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {name: sums[name] / counts[name] for name in sums}


def mean_replacement(groups: list[Group], order: Mapping[str, torch.Tensor], widths: Mapping[str, int],
                     means: Mapping[str, torch.Tensor]) -> Replacement:
    """What replacing each removed channel by its mean (instead of zero) means for every consumer layer."""
    replaced: Replacement = {}
    for group in groups:
        removed = group.width - widths.get(group.label, group.width)
        if removed <= 0:
            continue
        channels = set(order[group.label][:removed].tolist())
        for member in group.members:
            if member.kind == "in" and member.module in means:
                idxs, values = replaced.setdefault(member.module, ([], []))
                gone = [i for i, c in zip(member.idxs, member.group_channels()) if c in channels]
                idxs += gone
                values += [float(means[member.module][i]) for i in gone]
    return replaced


def fold_replacement(model: nn.Module, replaced: Replacement) -> None:
    """Add each consumer's weight columns of the replaced inputs times their means to its bias (in place, before
    those inputs are removed): the layer then computes what it computed with the inputs held at their means."""
    with torch.no_grad():
        for name, (idxs, values) in replaced.items():
            layer = model.get_submodule(name)
            if getattr(layer, "bias", None) is None:
                raise ValueError(f"mean replacement folds into the consumer's bias, and {name!r} has none")
            layer.bias.add_(layer.weight[:, idxs] @ torch.tensor(values, dtype=layer.weight.dtype))


def leaves_channels(dg: tp.DependencyGraph, pruning_group: tp.Group) -> bool:
    """True if removing `pruning_group` leaves every layer at least one channel. Like torch-pruning's
    check_pruning_group, but counting distinct indices: a layer behind an Unflatten receives each of its
    channels once per feature of the block (1568 features onto 32 channels: each index 49 times)."""
    for dep, idxs in pruning_group:
        for applies, channels in ((dg.is_out_channel_pruning_fn, dg.get_out_channels),
                                  (dg.is_in_channel_pruning_fn, dg.get_in_channels)):
            if applies(dep.handler):
                available = channels(dep.target.module)
                if available is not None and available <= len(set(idxs)):
                    return False
    return True


def harden_widths(problem: PruningProblem, groups: list[Group], order: Mapping[str, torch.Tensor],
                  widths: Mapping[str, int], replaced: Replacement | None = None) -> tuple[nn.Module, list]:
    """Deep copy of the dense model with the least important channels of each group physically removed
    (with `replaced`, their consumers' biases first take over the removed inputs' means).

    Returns the pruned copy and its torch-pruning history (replay it on a target network with
    `DependencyGraph.load_pruning_history`).
    """
    model = copy.deepcopy(problem.model)
    fold_replacement(model, replaced or {})
    dg = dependency_graph(model, problem)
    for group in groups:
        removed = group.width - widths.get(group.label, group.width)
        if removed <= 0:
            continue
        pruning_group = tp_group(dg, group, order[group.label][:removed].tolist())
        if not leaves_channels(dg, pruning_group):
            raise RuntimeError(f"torch-pruning refused to remove {removed} channels of group {group.label!r}")
        pruning_group.prune()
    free_unflatten_channels(model)
    return model, [list(step) for step in dg.pruning_history()]


def free_unflatten_channels(model: nn.Module) -> None:
    """Let every nn.Unflatten infer its first size (-1): torch-pruning removes the channels behind it (whole
    blocks of features) but leaves the sizes it was built with."""
    for module in model.modules():
        if isinstance(module, nn.Unflatten) and len(module.unflattened_size) > 1:
            module.unflattened_size = (-1, *module.unflattened_size[1:])


def harden_with_means(problem: PruningProblem, groups: list[Group], order: Mapping[str, torch.Tensor],
                      widths: Mapping[str, int], means: Mapping[str, torch.Tensor] | None
                      ) -> tuple[nn.Module, list, Replacement]:
    """`harden_widths`, with mean replacement when `means` (from `consumer_means`) are given: (model, history,
    replacement)."""
    replaced = mean_replacement(groups, order, widths, means) if means else {}
    return (*harden_widths(problem, groups, order, widths, replaced), replaced)


def harden(problem: PruningProblem, groups: list[Group], order: Mapping[str, torch.Tensor],
           coeffs: Mapping[str, float]) -> tuple[nn.Module, list]:
    """Remove round(c_g n_g) least important channels of every group from a copy: (model, history)."""
    return harden_widths(problem, groups, order, kept_widths(coeffs, groups))


def _block_positions(order: torch.Tensor, block: int) -> torch.Tensor:
    """Rank position of every block (0 = least important) from channel indices in importance order, whole
    blocks of `block` consecutive channels at a time (as `ranking` orders them)."""
    blocks = order[::block] // block
    position = torch.empty(len(blocks))
    position[blocks] = torch.arange(len(blocks), dtype=torch.float32)
    return position


class SoftMasks:
    """Soft channel masks m_gj = sigmoid((r_gj - c_g) / T) on the consumer side of every prunable group.

    r_gj = (rank + 0.5) / B_g is the normalized importance rank of channel j's block among the group's B_g
    blocks (0 = least important; a block is one channel unless the group has a block size), so a block fades
    as a whole; the most important block of a group always keeps mask 1, so a group never vanishes.
    Consumer inputs are multiplied by
    the masks and LayerNorms of a group normalise with mask-weighted statistics, so with T = 0 (hard
    masks) the masked model computes exactly what the physically pruned model computes, as long as no op
    between a group's producers and its consumers mixes its channels (a softmax over blocks of channels is
    fine when the group has that block size). With `means`
    (mean replacement), a consumer input is mixed with its mean instead: x m + (1 - m) mean, which hardens
    to the pruned model whose consumer biases absorbed the removed inputs' means (`fold_replacement`).
    `c` holds one nn.Parameter per prunable group. Use as a context manager, or call install() / remove().
    """

    def __init__(self, model: nn.Module, groups: list[Group], order: Mapping[str, torch.Tensor],
                 init: float | Mapping[str, float] = 0.0, temperature: float = 0.5,
                 straight_through: bool = False, means: Mapping[str, torch.Tensor] | None = None) -> None:
        self.model = model
        self.means = dict(means or {})
        """Consumer layer -> mean input: a masked-out input is held at its mean instead of zero."""
        self.groups = [g for g in groups if g.prunable]
        self.temperature = temperature
        self.straight_through = straight_through
        start = (lambda label: float(init)) if isinstance(init, (int, float)) else (
            lambda label: float(init.get(label, 0.0)))
        self.c = {g.label: nn.Parameter(torch.tensor(start(g.label))) for g in self.groups}
        self._order = {g.label: order[g.label] for g in self.groups}
        self._position = {g.label: _block_positions(order[g.label], g.block) for g in self.groups}
        self._block_of = {g.label: torch.arange(g.width) // g.block for g in self.groups}
        self._slots: dict[tuple[str, str], list[tuple[Group, torch.Tensor, torch.Tensor]]] = {}
        for g in self.groups:
            for m in g.members:
                self._slots.setdefault((m.module, m.kind), []).append(
                    (g, torch.tensor(m.idxs), torch.tensor(m.group_channels())))
        self._check_supported()
        self._handles: list = []

    def _check_supported(self) -> None:
        for name, kind in self._slots:
            module = self.model.get_submodule(name)
            if kind == "in" and not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
                raise NotImplementedError(f"soft masks feed Linear and convolution consumers only; {name!r} is "
                                          f"{type(module).__name__}")
            if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
                raise NotImplementedError(f"LayerNorm {name!r} normalises over several axes")
            if isinstance(module, nn.GroupNorm):
                raise NotImplementedError(f"GroupNorm {name!r} mixes channels within its groups; soft masks "
                                          f"cannot mimic its pruned statistics")

    def parameters(self) -> list[nn.Parameter]:
        """The coefficients, in group order (for an optimizer)."""
        return list(self.c.values())

    def set_widths(self, widths: Mapping[str, int]) -> None:
        """Set every coefficient so that it hardens to exactly these kept widths."""
        with torch.no_grad():
            for g in self.groups:
                self.c[g.label].fill_((g.width - widths.get(g.label, g.width)) / g.width)

    @contextlib.contextmanager
    def pinned(self, widths: Mapping[str, int]) -> Iterator[SoftMasks]:
        """Temporarily hard masks at exactly these kept widths; coefficients and temperature come back after."""
        saved = {label: c.detach().clone() for label, c in self.c.items()}
        temperature = self.temperature
        self.set_widths(widths)
        self.temperature = 0
        try:
            yield self
        finally:
            with torch.no_grad():
                for label, value in saved.items():
                    self.c[label].copy_(value)
            self.temperature = temperature

    def _hard(self, group: Group) -> torch.Tensor:
        removed = n_removed(float(self.c[group.label].detach()), group.width, group.block) // group.block
        return (self._position[group.label] >= removed).float()

    def mask(self, group: Group) -> torch.Tensor:
        """Mask of each channel of `group` (in channel order) at the current coefficients and temperature."""
        return self._block_mask(group)[self._block_of[group.label]]

    def _block_mask(self, group: Group) -> torch.Tensor:
        if self.temperature == 0:
            return self._hard(group)
        position = self._position[group.label]
        rank = (position + 0.5) / len(position)
        soft = torch.sigmoid((rank - self.c[group.label]) / self.temperature)
        soft = torch.where(position == len(position) - 1, torch.ones_like(soft), soft)
        if self.straight_through:
            return self._hard(group) + soft - soft.detach()
        return soft

    def mask_by_rank(self, group: Group) -> torch.Tensor:
        """Mask of each channel of `group` ordered least important first."""
        return self.mask(group)[self._order[group.label]]

    def expected_widths(self) -> dict[str, torch.Tensor]:
        """Expected kept width (sum of masks) per prunable group; differentiable in c."""
        return {g.label: self.mask(g).sum() for g in self.groups}

    def _full_mask(self, module_name: str, kind: str, size: int) -> torch.Tensor:
        mask = torch.ones(size)
        for group, idxs, channels in self._slots[(module_name, kind)]:
            mask = mask.index_put((idxs,), self.mask(group)[channels])
        return mask

    def _consumer_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple) -> tuple:
            x = inputs[0]
            spatial = len(module.kernel_size) if isinstance(module, nn.modules.conv._ConvNd) else 0
            mask = self._full_mask(name, "in", x.shape[x.dim() - spatial - 1]).to(x.dtype)
            mask = mask.view(-1, *[1] * spatial)  # channels first for convolutions, last for Linear
            masked = x * mask if name not in self.means else x * mask + (1 - mask) * self.means[name].to(x.dtype)
            return (masked,) + tuple(inputs[1:])
        return hook

    def _norm_hook(self, name: str):
        def hook(module: nn.LayerNorm, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            x = inputs[0]
            w = self._full_mask(name, "norm", x.shape[-1]).to(x.dtype)
            mean = (x * w).sum(-1, keepdim=True) / w.sum()
            var = (w * (x - mean) ** 2).sum(-1, keepdim=True) / w.sum()
            y = (x - mean) / torch.sqrt(var + module.eps)
            if module.weight is not None:
                y = y * module.weight
            return y + module.bias if module.bias is not None else y
        return hook

    def install(self) -> SoftMasks:
        """Register the hooks on the model (idempotent)."""
        if self._handles:
            return self
        for name, kind in self._slots:
            module = self.model.get_submodule(name)
            if kind == "in":
                self._handles.append(module.register_forward_pre_hook(self._consumer_hook(name)))
            elif isinstance(module, nn.LayerNorm):
                self._handles.append(module.register_forward_hook(self._norm_hook(name)))
        return self

    def remove(self) -> None:
        """Remove every hook: the model computes exactly what it computed before install()."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> SoftMasks:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        coeffs = ", ".join(f"{k}={float(v):.3f}" for k, v in self.c.items())
        return f"SoftMasks(T={self.temperature}, installed={bool(self._handles)}, c={{{coeffs}}})"
