"""Pruning groups from torch-pruning's dependency graph, tagged with the components they touch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, NamedTuple

import torch.nn as nn
import torch_pruning as tp

from pruning.problem import PruningProblem

MemberKind = Literal["out", "in", "norm"]
ROOT_TYPES: list[type[nn.Module]] = [nn.Linear]
"""Layer types whose output channels root the groups."""


class Member(NamedTuple):
    """One module's share of a group: channel `idxs[j]` of `module` belongs to group channel j."""

    module: str
    kind: MemberKind
    idxs: tuple[int, ...]

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
    """False for inter groups when the problem keeps the latent whole."""
    block: int = 1
    """Channels removed together: every kept width is a multiple of it (PruningProblem.round_to)."""

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


def _members(dg: tp.DependencyGraph, group: tp.Group, label: str) -> list[Member]:
    width = len(group[0].idxs)
    members = []
    for item in group:
        module = item.dep.target.module
        if isinstance(module, nn.Parameter):
            raise NotImplementedError(f"group {label!r} holds an unwrapped nn.Parameter; wrap it in a module")
        name = dg._module2name.get(module) if isinstance(module, nn.Module) else None
        if name is None:
            continue  # a functional node of the graph (cat, split, add...), not a layer
        aligned: list[int | None] = [None] * width
        for idx, root in zip(item.idxs, item.root_idxs):
            aligned[root] = idx
        if None in aligned:
            raise NotImplementedError(f"module {name!r} holds only part of group {label!r}; not supported")
        members.append(Member(name, _kind(dg, module, item.dep.handler), tuple(aligned)))
    return members


def _touched_components(members: list[Member], problem: PruningProblem) -> tuple[str, ...]:
    def inside(name: str, sub: str) -> bool:
        return name == sub or name.startswith(sub + ".")
    return tuple(component for component, sub in problem.components.items()
                 if any(inside(m.module, sub) for m in members))


def build_groups(problem: PruningProblem) -> list[Group]:
    """All groups of the model (output layers ignored), rooted at nn.Linear layers, in module order."""
    dg = dependency_graph(problem.model, problem)
    ignored = output_modules(problem.model, problem)
    found = {dg._module2name[tpg[0].dep.target.module]: tpg
             for tpg in dg.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES)}
    model_order = [name for name, _ in problem.model.named_modules() if name in found]
    groups = []
    for index, label in enumerate(model_order):
        members = _members(dg, found[label], label)
        components = _touched_components(members, problem)
        kind = "inter" if len(components) > 1 else "intra"
        groups.append(Group(index=index, label=label, width=len(found[label][0].idxs), components=components,
                            kind=kind, members=members, prunable=problem.latent_prunable or kind == "intra"))
    _check_block_keys(problem, groups)
    for group in groups:
        group.block = _block_size(problem, group)
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
