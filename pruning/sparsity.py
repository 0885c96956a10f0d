"""Parameter accounting: the exact parameter count as a function of the kept width of every group."""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from pruning.groups import Group


def count_params(model: nn.Module) -> int:
    """Number of parameters of the model (every parameter, heads included)."""
    return sum(p.numel() for p in model.parameters())


def out_axis(module: nn.Module) -> int:
    """Axis of a Linear's or convolution's weight that holds its output channels (1 for ConvTranspose,
    whose weights are (in, out / groups, ...))."""
    return 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0


def out_channels(module: nn.Module) -> int:
    """Output channels of a Linear or convolution."""
    return module.weight.shape[out_axis(module)] * (module.groups if out_axis(module) == 1 else 1)


def sparsity(dense_params: int, params: int | float | torch.Tensor) -> float | torch.Tensor:
    """rho = 1 - params / dense_params."""
    return 1.0 - params / dense_params


def _axis_kinds(module: nn.Module, ndim: int, kinds: set[str]) -> list[str | None]:
    """Which member kind owns each axis of a parameter of `module` (ConvTranspose weights are (in, out, ...);
    a depthwise convolution's channels are a 'norm' member: its weight's axis 0)."""
    if "norm" in kinds:
        if ndim == 1 or isinstance(module, nn.modules.conv._ConvNd):
            return ["norm"] + [None] * (ndim - 1)
        raise NotImplementedError(f"{type(module).__name__} has a {ndim}-D parameter inside a norm group")
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd) and ndim > 1  # its bias is 'out'
    first = ["in", "out"] if transposed else ["out", "in"]
    return (first + [None] * ndim)[:ndim]


def _axis_divisor(module: nn.Module, axis: int) -> int:
    """A grouped convolution's weight holds channels / groups along axis 1."""
    return getattr(module, "groups", 1) if axis == 1 and isinstance(module, nn.modules.conv._ConvNd) else 1


class ParamModel:
    """Analytic parameter count: each parameter axis has size `fixed + sum of kept channels of its groups`
    (times the features per channel behind a flatten, over the groups of a grouped convolution).

    Works for hard kept widths (exact integers) and for soft widths (expected kept = sum of mask values,
    differentiable). `params_batch` evaluates a whole grid of width vectors at once.
    """

    def __init__(self, model: nn.Module, groups: list[Group]) -> None:
        self.labels = [g.label for g in groups]
        self.widths = torch.tensor([g.width for g in groups], dtype=torch.float64)
        on_axis: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for gi, group in enumerate(groups):
            for member in group.members:
                on_axis.setdefault((member.module, member.kind), []).append((gi, len(member.idxs) / group.width))
        kinds_of: dict[str, set[str]] = {}
        for module, kind in on_axis:
            kinds_of.setdefault(module, set()).add(kind)
        shapes = [(name, module, p.shape) for name, module in model.named_modules()
                  for p in module.parameters(recurse=False)]
        max_ndim = max(len(shape) for _, _, shape in shapes)
        fixed = torch.ones(len(shapes), max_ndim, dtype=torch.float64)
        coupling = torch.zeros(len(groups), len(shapes), max_ndim, dtype=torch.float64)
        for pi, (name, module, shape) in enumerate(shapes):
            axis_kinds = _axis_kinds(module, len(shape), kinds_of.get(name, set()))
            for axis, (size, kind) in enumerate(zip(shape, axis_kinds)):
                owners = on_axis.get((name, kind), []) if kind else []
                divisor = _axis_divisor(module, axis)
                fixed[pi, axis] = size - sum(groups[gi].width * per / divisor for gi, per in owners)
                for gi, per in owners:
                    coupling[gi, pi, axis] += per / divisor
                if fixed[pi, axis] < -1e-9:
                    raise NotImplementedError(f"axis {axis} of a parameter of {name!r} is smaller than its groups")
        self.fixed = fixed.flatten()
        self.coupling = coupling.flatten(1)
        self.shape = (len(shapes), max_ndim)
        self.dense = int(self.params_batch(self.widths[None])[0].round())

    def vector(self, widths: Mapping[str, float | torch.Tensor]) -> torch.Tensor:
        """Kept widths as a vector in group order; a missing label means the group is kept whole."""
        return torch.stack([torch.as_tensor(widths.get(label, self.widths[i]), dtype=torch.float64)
                            for i, label in enumerate(self.labels)])

    def params_batch(self, kept: torch.Tensor) -> torch.Tensor:
        """Parameter counts for a batch of kept-width vectors `kept` of shape (B, groups)."""
        kept = kept.to(torch.float64)
        axes = self.fixed + kept @ self.coupling
        return axes.view(len(kept), *self.shape).prod(-1).sum(-1)

    def params(self, widths: Mapping[str, float | torch.Tensor]) -> torch.Tensor:
        """Parameter count for kept widths per label (float64 tensor, differentiable in soft widths)."""
        return self.params_batch(self.vector(widths)[None])[0]

    def hard_params(self, widths: Mapping[str, int]) -> int:
        """Exact integer parameter count of the model pruned to these kept widths."""
        return int(self.params(widths).round())

    def sparsity(self, widths: Mapping[str, float | torch.Tensor]) -> torch.Tensor:
        """rho of the model pruned to these (hard or soft) kept widths."""
        return sparsity(self.dense, self.params(widths))

    def __repr__(self) -> str:
        return f"ParamModel(groups={len(self.labels)}, parameter tensors={self.shape[0]}, dense={self.dense})"
