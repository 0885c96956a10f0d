"""The pruning problem: one dense model, its components, and what a method may use to judge it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

import torch
import torch.nn as nn


BlockSpec = Union[int, Mapping[str, int], Callable[[Any], int], None]
"""PruningProblem.round_to: one block size, block sizes by group label / component / "latent", or a callable."""


@dataclass
class PruningProblem:
    """Everything a pruning method needs to know about one model."""

    model: nn.Module
    """Dense trained model; methods never modify it (they work on deep copies)."""
    components: dict[str, str]
    """Component name -> qualified submodule name, e.g. {"encoder": "encoder", "decoder": "decoder"}."""
    output_layers: list[str]
    """Qualified names of the layers whose output channels are never pruned (reconstruction, heads)."""
    example_inputs: Any
    """Inputs for tracing the dependency graph (batch >= 2)."""
    forward_fn: Callable[[nn.Module, Any], Any] | None = None
    """Traced forward exercising every path the model uses; None calls model(example_inputs)."""
    latent_prunable: bool = True
    """False keeps the inter-component groups (the latent width) whole."""
    metric: Callable[[nn.Module], float] | None = None
    """True task metric on validation data, higher is better (used by the grid searches)."""
    surrogate: Callable[[nn.Module, int], torch.Tensor] | None = None
    """Differentiable task loss of a soft-masked model at optimisation step k; k = -1 asks for held-out data."""
    c_max: float = 0.95
    """Largest fraction of a group that may be removed."""
    round_to: BlockSpec = None
    """Block size of the groups: channels are removed in whole blocks, so every kept width is a multiple of it.
    An int (every group), a mapping from a group label, a component name (its intra groups) or "latent" (the
    inter groups) to a block size, or a callable Group -> block size; None: single channels. A group whose
    channels feed a reshape into blocks (e.g. SimNorm's view(..., 8)) needs one."""

    def __post_init__(self) -> None:
        validate_problem(self)

    def __repr__(self) -> str:
        return (f"PruningProblem(model={type(self.model).__name__}, components={self.components}, "
                f"output_layers={self.output_layers}, latent_prunable={self.latent_prunable}, "
                f"metric={'yes' if self.metric else 'no'}, surrogate={'yes' if self.surrogate else 'no'}, "
                f"c_max={self.c_max}" + (f", round_to={self.round_to!r})" if self.round_to is not None else ")"))


def _module_names(model: nn.Module) -> set[str]:
    return {name for name, _ in model.named_modules() if name}


def validate_problem(problem: PruningProblem) -> None:
    """Raise ValueError naming the valid choices if a component or output layer is not in the model."""
    names = _module_names(problem.model)
    children = sorted(name for name, _ in problem.model.named_children())
    if not problem.components:
        raise ValueError(f"components must not be empty; the model's child modules are {children}")
    for component, submodule in problem.components.items():
        if submodule not in names:
            raise ValueError(f"component {component!r} points to {submodule!r}, which is not a submodule of "
                             f"the model; the model's child modules are {children}")
    for layer in problem.output_layers:
        if layer not in names:
            raise ValueError(f"output layer {layer!r} is not a submodule of the model; "
                             f"the model's child modules are {children}")
    if not 0.0 < problem.c_max < 1.0:
        raise ValueError(f"c_max must lie in (0, 1), got {problem.c_max}")
    spec = problem.round_to
    sizes = [spec] if isinstance(spec, int) else list(spec.values()) if isinstance(spec, Mapping) else []
    if not (spec is None or callable(spec) or sizes or isinstance(spec, Mapping)):
        raise ValueError(f"round_to must be an int, a mapping of group labels / components / 'latent' to block "
                         f"sizes, or a callable Group -> int; got {spec!r}")
    if any(isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in sizes):
        raise ValueError(f"round_to block sizes must be integers >= 1, got {spec!r}")


def validate_target(target: float, eps: float) -> None:
    """Raise ValueError unless the target sparsity lies in [0, 1) and the tolerance is positive."""
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target sparsity must lie in [0, 1), got {target}")
    if not eps > 0.0:
        raise ValueError(f"tolerance eps must be > 0, got {eps}")
