"""What every method does first: validate, find the groups, set up parameter accounting."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten

from pruning.coefficients import kept_widths
from pruning.groups import Group, build_groups
from pruning.problem import PruningProblem, validate_target
from pruning.result import PruneResult
from pruning.sparsity import ParamModel, count_params, out_channels
from pruning.stats import call_model


class UnusableModelError(RuntimeError):
    """A pruned model that fails its forward pass on the example inputs, or whose outputs differ in shape from
    the dense model's or are not finite where the dense model's are."""


@dataclass
class SearchContext:
    """One validated pruning task: problem, target band, groups and their parameter model."""

    problem: PruningProblem
    target: float
    eps: float
    groups: list[Group]
    params: ParamModel
    started: float = field(default_factory=time.perf_counter)
    """perf_counter() when the search started."""
    floor: float | None = None
    """Lowest sparsity a search accepts (None: target - eps); target makes the band one-sided."""
    _reference: list | None = field(default=None, repr=False)
    """The dense model's outputs on the example inputs, flattened (computed on first use)."""

    def in_band(self, achieved: float) -> bool:
        """|achieved - target| <= eps (with a little slack for float rounding)."""
        return abs(achieved - self.target) <= self.eps + 1e-12

    def acceptable(self, achieved: float) -> bool:
        """In the band the search aims at: [floor, target + eps]."""
        low = self.target - self.eps if self.floor is None else self.floor
        return low - 1e-12 <= achieved <= self.target + self.eps + 1e-12

    @property
    def aim(self) -> float:
        """Centre of the band the search aims at."""
        low = self.target - self.eps if self.floor is None else self.floor
        return (low + self.target + self.eps) / 2

    @property
    def half_width(self) -> float:
        """Half the width of the band the search aims at."""
        return self.target + self.eps - self.aim

    def hard_sparsity(self, widths: Mapping[str, int]) -> float:
        """Exact sparsity of the model pruned to these kept widths."""
        return 1.0 - self.params.hard_params(widths) / self.params.dense

    @property
    def prunable(self) -> list[Group]:
        """Groups a method may shrink."""
        return [g for g in self.groups if g.prunable]

    def __repr__(self) -> str:
        return (f"SearchContext(target={self.target}, eps={self.eps}, groups={len(self.groups)}, "
                f"dense params={self.params.dense})")


def max_sparsity(groups: list[Group], params: ParamModel, c_max: float) -> float:
    """Sparsity with every prunable group at c_max (at least one channel kept)."""
    widths = kept_widths({g.label: c_max for g in groups}, groups)
    return 1.0 - params.hard_params(widths) / params.dense


def prepare(problem: PruningProblem, target: float, eps: float) -> SearchContext:
    """Validate the inputs and build groups and accounting; raise ValueError before any search work."""
    started = time.perf_counter()
    validate_target(target, eps)
    groups = build_groups(problem)
    params = ParamModel(problem.model, groups)
    if params.dense != count_params(problem.model):
        raise RuntimeError(f"parameter accounting found {params.dense} parameters, the model has "
                           f"{count_params(problem.model)}")
    reachable = max_sparsity(groups, params, problem.c_max)
    if target - eps > reachable:
        raise ValueError(f"target sparsity {target} is out of reach: max reachable sparsity is {reachable:.4f} "
                         f"(every prunable group at c_max={problem.c_max}, latent_prunable="
                         f"{problem.latent_prunable})")
    return SearchContext(problem, target, eps, groups, params, started)


def solve_ratio(probe: Callable[[float], float], ctx: SearchContext, hi: float, iterations: int = 40) -> float:
    """Bisection on a uniform ratio in [0, hi] for a monotone sparsity `probe(ratio)`.

    Returns the first ratio found inside the band, else the ratio whose sparsity came closest to the target.
    """
    seen: dict[float, float] = {}

    def rho(ratio: float) -> float:
        if ratio not in seen:
            seen[ratio] = probe(ratio)
        return seen[ratio]

    lo = 0.0
    if rho(hi) >= ctx.target:
        for _ in range(iterations):
            mid = (lo + hi) / 2
            if ctx.in_band(rho(mid)):
                return mid
            lo, hi = (mid, hi) if rho(mid) < ctx.target else (lo, mid)
    return min(seen, key=lambda r: abs(seen[r] - ctx.target))


def measured_widths(model: nn.Module, groups: list[Group]) -> dict[str, int]:
    """Width of every group read off a (physically pruned) model: its root layer's output size."""
    return {g.label: out_channels(model.get_submodule(g.label)) for g in groups}


def forward_outputs(problem: PruningProblem, model: nn.Module) -> list:
    """Flattened outputs of `model` on the example inputs (problem.forward_fn when set), computed without
    gradients, with the global RNG and the model's buffers (e.g. batch-norm statistics) left as they were."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            outputs = (problem.forward_fn(model, problem.example_inputs) if problem.forward_fn is not None
                       else call_model(model, problem.example_inputs))
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
    return tree_flatten(outputs)[0]


def _changed_widths(ctx: SearchContext, widths: Mapping[str, int]) -> str:
    changed = [f"{g.label} {widths[g.label]} of {g.width}" + (f" (blocks of {g.block})" if g.block > 1 else "")
               for g in ctx.groups if widths.get(g.label, g.width) != g.width]
    return ", ".join(changed) or "none"


def _shape_allowed(shape: tuple, expected: tuple, exposed: set[int]) -> bool:
    """Equal shapes, or shapes that differ on one axis whose new size is the kept width of a pruned group
    (the forward returns that group's channels, e.g. a latent)."""
    if shape == expected:
        return True
    differ = [axis for axis, (a, b) in enumerate(zip(shape, expected)) if a != b]
    return len(shape) == len(expected) and len(differ) == 1 and shape[differ[0]] in exposed


def check_usable(ctx: SearchContext, model: nn.Module, widths: Mapping[str, int]) -> None:
    """Run `model` once on the example inputs; raise UnusableModelError naming the pruned groups if it fails,
    if its outputs differ in number or shape from the dense model's (other than a returned group's width) or
    if they turn non-finite where the dense model's are finite."""
    if ctx._reference is None:
        ctx._reference = forward_outputs(ctx.problem, ctx.problem.model)
    changed = _changed_widths(ctx, widths)
    hint = ("if a layer reshapes a group's channels into blocks (e.g. view(..., 8)), give that group a block "
            "size: PruningProblem(..., round_to={label: block})")
    try:
        outputs = forward_outputs(ctx.problem, model)
    except Exception as error:  # any failure of the user's forward means the model is unusable
        raise UnusableModelError(f"the pruned model fails its forward pass ({type(error).__name__}: {error}); "
                                 f"pruned group widths: {changed}; {hint}") from error
    shapes = [tuple(getattr(o, "shape", ())) for o in outputs]
    expected = [tuple(getattr(o, "shape", ())) for o in ctx._reference]
    exposed = {widths[g.label] for g in ctx.groups if widths.get(g.label, g.width) != g.width}
    if len(shapes) != len(expected) or not all(map(_shape_allowed, shapes, expected, [exposed] * len(shapes))):
        raise UnusableModelError(f"the pruned model's output shapes {shapes} differ from the dense model's "
                                 f"{expected}; pruned group widths: {changed}")
    for out, ref in zip(outputs, ctx._reference):
        if (isinstance(out, torch.Tensor) and out.is_floating_point() and out.shape == ref.shape
                and not torch.isfinite(out[torch.isfinite(ref)]).all()):
            raise UnusableModelError(f"the pruned model's outputs are not finite where the dense model's are; "
                                     f"pruned group widths: {changed}")


def finish(ctx: SearchContext, method: str, model: nn.Module, widths: Mapping[str, int],
           coefficients: Mapping[str, float], *, evaluations: int = 0, masked: bool = False,
           history: list | None = None, info: dict | None = None, replaced: dict | None = None) -> PruneResult:
    """Package a result after one forward pass of the model on the example inputs (UnusableModelError if it
    cannot run); physically pruned models are counted for real, masked ones analytically."""
    seconds = time.perf_counter() - ctx.started
    model.train(ctx.problem.model.training)
    check_usable(ctx, model, widths)
    params = ctx.params.hard_params(widths) if masked else count_params(model)
    achieved = 1.0 - params / ctx.params.dense
    return PruneResult(model=model, method=method, target=ctx.target, achieved=achieved,
                       in_band=ctx.in_band(achieved), params=params,
                       coefficients={k: float(v) for k, v in coefficients.items()},
                       widths={k: int(v) for k, v in widths.items()}, evaluations=evaluations,
                       search_seconds=seconds, masked=masked, history=history or [], info=info or {},
                       replaced=replaced or {})
