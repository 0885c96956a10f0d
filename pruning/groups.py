"""Pruning groups from torch-pruning's dependency graph, tagged with the components they touch."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Literal, Mapping, NamedTuple

import torch.nn as nn
import torch_pruning as tp

from pruning.problem import PruningProblem

MemberKind = Literal["out", "in", "norm"]
ROOT_TYPES: list[type[nn.Module]] = [nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                                     nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d]
"""Layer types whose output channels root the groups."""


class Member(NamedTuple):
    """One module's share of a group: channel `idxs[j]` of `module` belongs to group channel j, or, when
    `channels` is set (a reshape between the layers), channel `idxs[i]` belongs to group channel `channels[i]`."""

    module: str
    kind: MemberKind
    idxs: tuple[int, ...]
    channels: tuple[int, ...] | None = None
    """Group channel of each of `idxs` where the mapping is not one to one: several features per channel
    (Conv -> Flatten -> Linear), or one channel per block of group channels (Linear -> Unflatten -> Conv,
    any channel of the block standing for it)."""

    def group_channels(self) -> tuple[int, ...]:
        """Group channel of each of `idxs`."""
        return tuple(range(len(self.idxs))) if self.channels is None else self.channels

    def __repr__(self) -> str:
        return f"{self.module}:{self.kind}[{len(self.idxs)}]"


@dataclass
class Group:
    """A set of coupled channels that must be removed together (one hidden width, or the latent)."""

    index: int
    """Position in the list returned by build_groups."""
    label: str
    """Stable readable name: the qualified name of the root layer whose output channels define the group."""
    width: int
    """Number of channels n_g."""
    components: tuple[str, ...]
    """Components with a member module inside their submodule, in the problem's order."""
    kind: Literal["intra", "inter"]
    """'intra' if the group lies inside one component, 'inter' if it couples several (the latent)."""
    members: list[Member]
    """Every module the group touches, with the channel indices it owns."""
    prunable: bool
    """False for inter groups when the problem keeps the latent whole, and for groups that touch a grouped
    (not depthwise) convolution."""
    block: int = 1
    """Channels removed together: every kept width is a multiple of it (PruningProblem.round_to, or forced by
    an Unflatten onto channels)."""

    def __repr__(self) -> str:
        return (f"Group({self.index}, {self.label!r}, width={self.width}, {self.kind}, "
                f"components={list(self.components)}, members={len(self.members)}, prunable={self.prunable}"
                + (f", block={self.block})" if self.block > 1 else ")"))


def dependency_graph(model: nn.Module, problem: PruningProblem) -> tp.DependencyGraph:
    """Trace `model` (the dense one or a copy) with the problem's inputs; its train/eval mode is kept."""
    was_training = model.training
    dg = tp.DependencyGraph().build_dependency(
        model, example_inputs=problem.example_inputs, forward_fn=problem.forward_fn, verbose=False)
    model.train(was_training)
    return dg


def output_modules(model: nn.Module, problem: PruningProblem) -> list[nn.Module]:
    """The modules named in problem.output_layers, looked up on `model`."""
    return [model.get_submodule(name) for name in problem.output_layers]


def tp_group(dg: tp.DependencyGraph, group: Group, idxs: list[int] | None = None) -> tp.Group:
    """Re-find `group` in a graph traced on any copy of the model (keyed by root name); default: all channels."""
    module = dg.model.get_submodule(group.label)
    pruner = dg.get_pruner_of_module(module)
    return dg.get_pruning_group(module, pruner.prune_out_channels,
                                list(range(group.width)) if idxs is None else idxs)


def _kind(dg: tp.DependencyGraph, module: nn.Module, handler) -> MemberKind:
    pruner = dg.get_pruner_of_module(module)
    if pruner.prune_in_channels == pruner.prune_out_channels:
        return "norm"
    return "out" if dg.is_out_channel_pruning_fn(handler) else "in"


def _members(dg: tp.DependencyGraph, names: dict[nn.Module, str], group: tp.Group,
             label: str) -> tuple[list[Member], int]:
    """The layers of a torch-pruning group with their channel mapping, and the block size the mapping forces
    (a layer holding one channel per `block` group channels, behind an Unflatten)."""
    width = len(group[0].idxs)
    members, block = [], 1
    for item in group:
        module = item.dep.target.module
        if isinstance(module, nn.Parameter):
            raise NotImplementedError(f"group {label!r} holds an unwrapped nn.Parameter; wrap it in a module")
        name = names.get(module) if isinstance(module, nn.Module) else None
        if name is None:
            continue  # a functional node of the graph (cat, split, add...), not a layer
        kind = _kind(dg, module, item.dep.handler)
        idxs, roots = [int(i) for i in item.idxs], [int(r) for r in item.root_idxs]
        if len(idxs) == width == len(set(idxs)):
            members.append(Member(name, kind, _aligned(idxs, roots, width, name, label)))
            continue
        held, channels, forced = _mapped(idxs, roots, width, name, label)
        members.append(Member(name, kind, held, channels))
        block = math.lcm(block, forced)
    return members, block


def _aligned(idxs: list[int], roots: list[int], width: int, name: str, label: str) -> tuple[int, ...]:
    aligned: list[int | None] = [None] * width
    for idx, root in zip(idxs, roots):
        aligned[root] = idx
    if None in aligned:
        raise NotImplementedError(f"module {name!r} maps several channels of group {label!r} onto one of its "
                                  f"channels, or holds only part of the group; not supported")
    return tuple(aligned)


def _mapped(idxs: list[int], roots: list[int], width: int, name: str, label: str
            ) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(member channels, group channel of each, block size forced) for a mapping that is not one to one;
    NotImplementedError unless it is whole blocks: `span` member channels per group channel (a flatten) or
    one member channel per `block` consecutive group channels (an unflatten: torch-pruning repeats the member
    channel for each group channel of its block, or names it once)."""
    counts = Counter(roots)
    if len(idxs) > width and len(counts) == width and len(set(counts.values())) == 1 and len(set(idxs)) == len(idxs):
        return tuple(idxs), tuple(roots), 1
    held = sorted(set(idxs))
    if len(held) < width and width % len(held) == 0:
        block = width // len(held)
        if held == list(range(len(held))) and all(root // block == idx for idx, root in zip(idxs, roots)):
            return tuple(held), tuple(idx * block for idx in held), block
    raise NotImplementedError(f"module {name!r} holds {len(held)} distinct channels for the {width} channels "
                              f"of group {label!r} in a mapping that is neither one to one nor whole blocks "
                              f"(a flatten or unflatten); not supported")


def _grouped_conv(module: nn.Module) -> bool:
    """A convolution with groups > 1 that is not depthwise (its channels cannot be pruned independently)."""
    groups = getattr(module, "groups", 1)
    return (isinstance(module, nn.modules.conv._ConvNd) and groups > 1
            and not groups == module.in_channels == module.out_channels)


def _touched_components(members: list[Member], problem: PruningProblem) -> tuple[str, ...]:
    def inside(name: str, sub: str) -> bool:
        return name == sub or name.startswith(sub + ".")
    return tuple(component for component, sub in problem.components.items()
                 if any(inside(m.module, sub) for m in members))


def build_groups(problem: PruningProblem) -> list[Group]:
    """All groups of the model (output layers ignored), rooted at Linear and convolution layers, in module order.

    A group whose channels reach a layer through an Unflatten gets the block size that keeps that layer's
    channels whole (e.g. 1568 features onto 32 channels: blocks of 49); a group touching a grouped (not
    depthwise) convolution is kept whole."""
    dg = dependency_graph(problem.model, problem)
    ignored = output_modules(problem.model, problem)
    names = {module: name for name, module in problem.model.named_modules()}
    found = {names[tpg[0].dep.target.module]: tpg
             for tpg in dg.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES)}
    model_order = [name for name, _ in problem.model.named_modules() if name in found]
    groups = []
    forced = {}
    for index, label in enumerate(model_order):
        members, forced[label] = _members(dg, names, found[label], label)
        components = _touched_components(members, problem)
        kind = "inter" if len(components) > 1 else "intra"
        grouped = any(_grouped_conv(problem.model.get_submodule(m.module)) for m in members)
        groups.append(Group(index=index, label=label, width=len(found[label][0].idxs), components=components,
                            kind=kind, members=members,
                            prunable=(problem.latent_prunable or kind == "intra") and not grouped))
    _check_block_keys(problem, groups)
    for group in groups:
        group.block = math.lcm(_block_size(problem, group), forced[group.label])
        if group.width % group.block:
            raise ValueError(f"group {group.label!r} has {group.width} channels, not a multiple of its block size "
                             f"{group.block} (round_to)")
    return groups


def _block_size(problem: PruningProblem, group: Group) -> int:
    """The block size round_to gives `group`: by label first, then component (intra) or "latent" (inter)."""
    spec = problem.round_to
    if spec is None:
        return 1
    if isinstance(spec, int):
        return spec
    if callable(spec) and not isinstance(spec, Mapping):
        size = spec(group)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"round_to({group.label!r}) returned {size!r}; block sizes are integers >= 1")
        return size
    keys = [group.label] + (["latent"] if group.kind == "inter" else list(group.components))
    return next((spec[key] for key in keys if key in spec), 1)


def _check_block_keys(problem: PruningProblem, groups: list[Group]) -> None:
    if not isinstance(problem.round_to, Mapping):
        return
    valid = {g.label for g in groups} | set(problem.components) | {"latent"}
    unknown = sorted(set(problem.round_to) - valid)
    if unknown:
        raise ValueError(f"round_to names {unknown}, which are neither group labels, components nor 'latent'; "
                         f"group labels: {[g.label for g in groups]}")


def format_group_table(groups: list[Group]) -> str:
    """A markdown table of the groups: index, label, width, block, kind, components, members, prunable."""
    rows = ["| # | group | width | block | kind | components | members | prunable |",
            "|---|---|---|---|---|---|---|---|"]
    rows += [f"| {g.index} | {g.label} | {g.width} | {g.block} | {g.kind} | {', '.join(g.components)} | "
             f"{len(g.members)} | {'yes' if g.prunable else 'no'} |" for g in groups]
    return "\n".join(rows)
