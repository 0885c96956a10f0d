"""Grid search over pruning coefficients, judged by the true task metric on in-band candidates only."""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields

import torch

from pruning.coefficients import consumer_means, harden_with_means, n_removed
from pruning.context import SearchContext, UnusableModelError, check_usable, finish, measured_widths, prepare
from pruning.groups import Group
from pruning.problem import PruningProblem
from pruning.ranking import IMPORTANCES, ranking
from pruning.registry import check_options, register_method
from pruning.result import PruneResult

DEFAULT_BUDGET = 256
"""In-band candidates the component grid evaluates at most unless told otherwise."""
ESTIMATE_DRAWS = 65_536
"""Random combinations drawn to estimate the in-band count of a grid too large to enumerate."""
log = logging.getLogger(__name__)


@dataclass
class GridConfig:
    """Options of the grid searches (all overridable as method options)."""

    step: float = 0.1
    """Spacing of the coefficient levels 0, step, 2*step, ... <= c_max."""
    budget: int | None = None
    """Evaluate at most this many in-band candidates, chosen by a seeded shuffle (None: all; the methods
    default to DEFAULT_BUDGET for grid and 512 for grid-group)."""
    importance: str = "taylor"
    """Within-group ranking: 'taylor' (of the task surrogate), 'magnitude' or 'random'."""
    max_enumerate: int = 2_000_000
    """Grids up to this many combinations are enumerated; larger ones are sampled (budget required)."""
    max_draws: int = 2_000_000
    """Random combinations drawn at most when sampling a large grid."""
    chunk: int = 65_536
    """Combinations whose sparsity is computed in one vectorised batch."""
    mean_replacement: bool = False
    """A removed channel feeds its consumers its mean on the surrogate's data instead of zero (folded into their
    biases); as in the gradient method, so that both searches prune the same way."""

    def __post_init__(self) -> None:
        if not self.step > 0:
            raise ValueError(f"grid step must be > 0, got {self.step}")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget must be >= 1 (or absent for all candidates), got {self.budget}")
        if min(self.max_enumerate, self.max_draws, self.chunk) < 1:
            raise ValueError("max_enumerate, max_draws and chunk must be >= 1")
        if self.importance not in IMPORTANCES:
            raise ValueError(f"importance must be one of {list(IMPORTANCES)}, got {self.importance!r}")


def _levels(step: float, c_max: float) -> torch.Tensor:
    if not step > 0:
        raise ValueError(f"grid step must be > 0, got {step}")
    return torch.arange(0, math.floor(c_max / step + 1e-9) + 1, dtype=torch.float64) * step


def _axes(ctx: SearchContext, per_group: bool) -> tuple[list[str], list[int | None]]:
    """Names of the searched coefficients and, per group, the axis it follows (None: kept whole)."""
    if per_group:
        names = [g.label for g in ctx.prunable]
        return names, [names.index(g.label) if g.prunable else None for g in ctx.groups]
    names = list(dict.fromkeys(_axis_name(g) for g in ctx.prunable))
    return names, [names.index(_axis_name(g)) if g.prunable else None for g in ctx.groups]


def _axis_name(group: Group) -> str:
    return "latent" if group.kind == "inter" else (group.components[0] if group.components else group.label)


class _Grid:
    """Kept widths and sparsity of every level combination, in vectorised batches."""

    def __init__(self, ctx: SearchContext, axis_of: list[int | None], n_axes: int, levels: torch.Tensor):
        self.ctx, self.axis_of, self.n_axes, self.levels = ctx, axis_of, n_axes, levels
        self.size = len(levels) ** n_axes
        self.table = torch.tensor([[g.width - (n_removed(float(c), g.width, g.block) if axis is not None else 0)
                                    for c in levels] for g, axis in zip(ctx.groups, axis_of)], dtype=torch.float64)
        """(groups, levels): kept width of each group at each level."""
        self.gather_axis = torch.tensor([a if a is not None else 0 for a in axis_of])

    def digits(self, flat: torch.Tensor) -> torch.Tensor:
        """Level index of every axis for flat combination indices (mixed radix)."""
        base = len(self.levels)
        powers = base ** torch.arange(self.n_axes - 1, -1, -1)
        return (flat[:, None] // powers) % base

    def widths(self, digits: torch.Tensor) -> torch.Tensor:
        """Kept widths (B, groups) for level digits (B, axes)."""
        level_of_group = digits[:, self.gather_axis]
        return self.table[torch.arange(len(self.ctx.groups)), level_of_group]

    def widths_of(self, digits: torch.Tensor) -> dict[str, int]:
        """Kept width per group label for one combination."""
        return dict(zip(self.ctx.params.labels, self.widths(digits[None])[0].long().tolist()))

    def coefficients_of(self, digits: torch.Tensor) -> dict[str, float]:
        """Grid level per group label for one combination (0 for groups kept whole)."""
        return {g.label: float(self.levels[digits[axis]]) if axis is not None else 0.0
                for g, axis in zip(self.ctx.groups, self.axis_of)}

    def in_band(self, digits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask of in-band combinations and their sparsity."""
        rho = 1.0 - self.ctx.params.params_batch(self.widths(digits)) / self.ctx.params.dense
        return (rho - self.ctx.target).abs() <= self.ctx.eps + 1e-12, rho


Closest = tuple[float, torch.Tensor] | None
"""(distance to the target, digits) of the combination nearest to the target so far."""


def _closer(best: Closest, digits: torch.Tensor, rho: torch.Tensor, target: float) -> Closest:
    gap, i = (rho - target).abs().min(0)
    return (float(gap), digits[i]) if best is None or gap < best[0] else best


def _enumerate(grid: _Grid, cfg: GridConfig) -> tuple[torch.Tensor, Closest]:
    """All in-band combinations (digits) of the grid, and the closest combination overall."""
    found, closest = [], None
    for start in range(0, grid.size, cfg.chunk):
        digits = grid.digits(torch.arange(start, min(start + cfg.chunk, grid.size)))
        mask, rho = grid.in_band(digits)
        found.append(digits[mask])
        closest = _closer(closest, digits, rho, grid.ctx.target)
    return torch.cat(found), closest


def _sample(grid: _Grid, cfg: GridConfig, generator: torch.Generator) -> tuple[torch.Tensor, Closest]:
    """Distinct in-band combinations drawn uniformly at random until the budget is met, and the closest."""
    seen, found, closest, drawn = set(), [], None, 0
    while len(found) < cfg.budget and drawn < cfg.max_draws:
        digits = torch.randint(len(grid.levels), (cfg.chunk, grid.n_axes), generator=generator)
        drawn += cfg.chunk
        mask, rho = grid.in_band(digits)
        closest = _closer(closest, digits, rho, grid.ctx.target)
        for row in digits[mask].tolist():
            if tuple(row) not in seen and len(found) < cfg.budget:
                seen.add(tuple(row))
                found.append(row)
    return torch.tensor(found, dtype=torch.long).view(-1, grid.n_axes), closest


@dataclass
class GridEstimate:
    """How large a grid search is before it starts."""

    axes: list[str]
    """Names of the searched coefficients."""
    combinations: int
    """Level combinations of the grid."""
    in_band: int
    """Combinations inside the band (exact when enumerated, else estimated from a random sample)."""
    exact: bool
    """True when `in_band` was counted over the whole grid."""
    evaluations: int
    """Candidates the search would evaluate: min(in_band, budget)."""


def _build_grid(ctx: SearchContext, per_group: bool, step: float) -> tuple[list[str], _Grid]:
    names, axis_of = _axes(ctx, per_group)
    return names, _Grid(ctx, axis_of, len(names), _levels(step, ctx.problem.c_max))


def _count_in_band(grid: _Grid, cfg: GridConfig) -> tuple[int, bool]:
    if grid.size <= cfg.max_enumerate:
        total = 0
        for start in range(0, grid.size, cfg.chunk):
            total += int(grid.in_band(grid.digits(torch.arange(start, min(start + cfg.chunk, grid.size))))[0].sum())
        return total, True
    digits = torch.randint(len(grid.levels), (ESTIMATE_DRAWS, grid.n_axes), generator=torch.Generator().manual_seed(0))
    return round(float(grid.in_band(digits)[0].float().mean()) * grid.size), False


def estimate_grid(problem: PruningProblem, target: float, *, eps: float = 0.01, per_group: bool = False,
                  **options) -> GridEstimate:
    """Size of the `grid` (or, per_group, `grid-group`) search at this target, without evaluating anything."""
    method = "grid-group" if per_group else "grid"
    check_options(method, options, [f.name for f in fields(GridConfig)])
    cfg = GridConfig(**{"budget": 512 if per_group else DEFAULT_BUDGET, **options})
    ctx = prepare(problem, target, eps)
    names, grid = _build_grid(ctx, per_group, cfg.step)
    in_band, exact = _count_in_band(grid, cfg)
    budget = in_band if cfg.budget is None else min(in_band, cfg.budget)
    return GridEstimate(names, grid.size, in_band, exact, budget)


def _search(problem: PruningProblem, target: float, eps: float, seed: int, options: dict, method: str,
            per_group: bool, default_budget: int | None) -> PruneResult:
    check_options(method, options, [f.name for f in fields(GridConfig)])
    cfg = GridConfig(**{"budget": default_budget, **options})
    if problem.metric is None:
        raise ValueError(f"method {method!r} needs problem.metric (the true task metric, higher is better)")
    ctx = prepare(problem, target, eps)
    order = ranking(problem, ctx.groups, cfg.importance, seed)
    names, grid = _build_grid(ctx, per_group, cfg.step)
    generator = torch.Generator().manual_seed(seed)
    sampled = grid.size > cfg.max_enumerate
    if sampled and cfg.budget is None:
        raise ValueError(f"the {method} grid has {grid.size:.3g} combinations (> max_enumerate="
                         f"{cfg.max_enumerate}); pass a budget")
    candidates, closest = _sample(grid, cfg, generator) if sampled else _enumerate(grid, cfg)
    in_band_total = len(candidates)
    if not sampled and cfg.budget is not None and len(candidates) > cfg.budget:
        candidates = candidates[torch.randperm(len(candidates), generator=generator)[:cfg.budget]]
    log.info("%s: %d combinations, %d in band, evaluating %d", method, grid.size, in_band_total, len(candidates))
    means = consumer_means(problem, ctx.groups) if cfg.mean_replacement else None
    best, skipped = None, 0
    for digits in candidates:
        widths = grid.widths_of(digits)
        model, history, replaced = harden_with_means(problem, ctx.groups, order, widths, means)
        try:
            check_usable(ctx, model, widths)
        except UnusableModelError:
            skipped += 1
            continue
        score = float(problem.metric(model))
        if best is None or score > best[0]:
            best = (score, model, history, replaced, digits)
    if best is None:  # nothing in band: report the closest combination as a failure, unevaluated
        best = (None, *harden_with_means(problem, ctx.groups, order, grid.widths_of(closest[1]), means), closest[1])
    score, model, history, replaced, digits = best
    info = {"axes": names, "levels": grid.levels.tolist(), "grid_size": grid.size, "sampled": sampled,
            "in_band_candidates": in_band_total, "skipped_unusable": skipped, "best_metric": score, **asdict(cfg)}
    return finish(ctx, method, model, measured_widths(model, ctx.groups), grid.coefficients_of(digits),
                  evaluations=len(candidates) - skipped, history=history, info=info, replaced=replaced)


@register_method("grid")
def grid(problem: PruningProblem, target: float, *, eps: float = 0.01, seed: int = 0, **options) -> PruneResult:
    """One coefficient per component (shared by its intra groups) plus one for the latent; at most `budget`
    (default DEFAULT_BUDGET) in-band candidates, seeded; candidates that cannot run are skipped and counted."""
    return _search(problem, target, eps, seed, options, "grid", per_group=False, default_budget=DEFAULT_BUDGET)


@register_method("grid-group")
def grid_group(problem: PruningProblem, target: float, *, eps: float = 0.01, seed: int = 0,
               **options) -> PruneResult:
    """One coefficient per group; at most `budget` (default 512) in-band candidates, seeded."""
    return _search(problem, target, eps, seed, options, "grid-group", per_group=True, default_budget=512)
