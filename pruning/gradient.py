"""Constrained gradient descent on soft per-group pruning coefficients (the paper's main method)."""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, fields
from typing import Mapping

import torch

from pruning.coefficients import (SoftMasks, coefficients_for, consumer_means, harden_with_means, kept_widths,
                                  n_removed)
from pruning.context import SearchContext, finish, measured_widths, prepare, solve_ratio
from pruning.groups import Group
from pruning.problem import PruningProblem
from pruning.ranking import IMPORTANCES, ranking
from pruning.registry import check_options, register_method
from pruning.result import PruneResult


@dataclass
class GradientConfig:
    """Defaults of the gradient method (all overridable as method options)."""

    steps: int = 200
    """Adam steps on the coefficients."""
    lr: float = 0.02
    """Adam learning rate (coefficients live in [0, c_max])."""
    penalty: float = 1000.0
    """lambda of the augmented-Lagrangian band penalty (the task loss is normalised to 1 at the start)."""
    band_margin: float = 0.5
    """The optimisation aims at the band shrunk to margin * eps, leaving room for rounding."""
    t_start: float = 0.1
    """Mask temperature at the first step."""
    t_end: float = 0.01
    """Mask temperature at the last step (geometric annealing)."""
    straight_through: bool = False
    """Forward with hard masks, backward through the soft ones."""
    eval_every: int = 10
    """Every this many steps, harden + fix up the coefficients and score them on held-out data."""
    select: str = "heldout"
    """'heldout': keep the in-band iterate with the lowest surrogate(model, -1); 'last': the final one."""
    at_least_target: bool = True
    """Aim at [target, target + eps] rather than the whole band |rho - target| <= eps, so the result never
    undercuts the target; when no width vector lies in that window the search falls back to the whole band."""
    importance: str = "taylor"
    """Within-group ranking: 'taylor' (of the task surrogate), 'magnitude' or 'random'."""
    starts: tuple[str, ...] = ("uniform",)
    """Starting points, each optimised for `steps`: 'uniform' (one coefficient for every prunable group),
    'keep-inter' (inter-component groups whole, one coefficient for the intra groups) and 'greedy' (hard
    widths built by removing, chunk by chunk, the channels that raise the surrogate least per parameter
    saved); the best held-out iterate of all starts wins."""
    greedy_chunks: int = 8
    """The 'greedy' start removes 1/greedy_chunks of a group's width per move."""
    lazy_greedy: bool = False
    """The 'greedy' start rescores only the group whose earlier score is best, until a fresh score stays best."""
    probe_steps: int = 0
    """With several starts: run each for this many steps, then only the one with the best held-out iterate
    for the rest of the schedule (0: every start runs all `steps`)."""
    mean_replacement: bool = False
    """A removed channel feeds its consumers its mean on the surrogate's data instead of zero (folded into their
    biases at hardening); the soft masks mix each input with its mean."""
    final_candidates: int = 0
    """After the descent, score the this many best distinct in-band iterates (by the held-out surrogate) with
    problem.metric, the true task metric on validation data, and keep the one it rates best (0: off, the
    surrogate's best is kept; with `final_widen` at least the best is scored)."""
    final_widen: int = 0
    """Also score, with problem.metric, this many widened variants of the surrogate's best solution: each
    doubles one of its narrowest groups (by kept fraction, up to full width) and pays for it by the greedy
    start's removals from the groups wider than that (see `widened`); 0: off."""

    def __post_init__(self) -> None:
        self.starts = tuple(self.starts)
        unknown = [s for s in self.starts if s not in STARTS]
        if unknown or not self.starts:
            raise ValueError(f"starts must be a non-empty list of {list(STARTS)}, got {list(self.starts)}")
        if self.select not in ("heldout", "last"):
            raise ValueError(f"select must be 'heldout' or 'last', got {self.select!r}")
        if self.steps < 1 or self.eval_every < 1 or self.greedy_chunks < 1:
            raise ValueError("steps, eval_every and greedy_chunks must be >= 1")
        if min(self.probe_steps, self.final_candidates, self.final_widen) < 0:
            raise ValueError(f"probe_steps, final_candidates and final_widen must be >= 0, got {self.probe_steps}, "
                             f"{self.final_candidates} and {self.final_widen}")
        if self.importance not in IMPORTANCES:
            raise ValueError(f"importance must be one of {list(IMPORTANCES)}, got {self.importance!r}")


STARTS = ("uniform", "keep-inter", "greedy")


def uniform_start(ctx: SearchContext, groups: list[Group] | None = None) -> float:
    """The one coefficient shared by `groups` (default: every prunable group; the others stay whole) that
    comes closest to the target sparsity."""
    shared = ctx.groups if groups is None else groups

    def sparsity(c: float) -> float:
        return ctx.hard_sparsity(kept_widths({g.label: c for g in shared}, ctx.groups))

    return solve_ratio(sparsity, ctx, hi=ctx.problem.c_max)


def greedy_widths(ctx: SearchContext, masks: SoftMasks, chunks: int, lazy: bool = False,
                  start: Mapping[str, int] | None = None, keep: Mapping[str, int] | None = None) -> dict[str, int]:
    """Hard widths from `start` (default: the dense model): each move removes one chunk (1/chunks of the full
    width, not below the c_max floor nor below `keep`'s width for the group) from the group whose removal raises
    the surrogate (batch 0, hard masks) least per parameter saved, until the sparsity reaches the aim. `lazy`:
    rescore a group only while its score from an earlier move is the best (lazy greedy: a cut rarely gets cheaper
    after other cuts), not every group every move."""
    surrogate = ctx.problem.surrogate
    keep = keep or {}
    floor = {g.label: max(g.width - n_removed(ctx.problem.c_max, g.width, g.block), keep.get(g.label, 0))
             for g in ctx.prunable}
    widths = {g.label: g.width for g in ctx.groups} if start is None else dict(start)
    earlier: dict[str, float] = {}

    def loss(candidate: dict[str, int]) -> float:
        with masks.pinned(candidate), torch.no_grad():
            return float(surrogate(masks.model, 0))

    current = loss(widths)
    while ctx.hard_sparsity(widths) < ctx.aim:
        chunk = {g.label: min(g.block * max(1, round(g.width / g.block / chunks)), widths[g.label] - floor[g.label])
                 for g in ctx.prunable}
        movable = [label for label, n in chunk.items() if n > 0]
        if not movable:
            break

        def score(label: str) -> tuple[float, float]:
            """(surrogate after removing the chunk, its rise per parameter saved)"""
            after = loss({**widths, label: widths[label] - chunk[label]})
            return after, (after - current) / max(_move_cost(ctx, widths, label, -chunk[label]), 1)

        if lazy:
            scored: dict[str, tuple[float, float]] = {}
            while (best := min(movable, key=lambda label: scored[label][1] if label in scored
                               else earlier.get(label, -math.inf))) not in scored:
                scored[best] = score(best)
                earlier[best] = scored[best][1]
        else:
            scored = {label: score(label) for label in movable}
            best = min(scored, key=lambda label: scored[label][1])
        widths, current = {**widths, best: widths[best] - chunk[best]}, scored[best][0]
    return widths


def start_coefficients(ctx: SearchContext, start: str, masks: SoftMasks | None = None,
                       chunks: int = 8, lazy: bool = False) -> dict[str, float] | None:
    """Initial coefficient per prunable group for a named start; None when the start cannot reach the band
    or coincides with 'uniform' (no inter-component group is prunable). 'greedy' needs the masks."""
    if start == "uniform":
        return {g.label: uniform_start(ctx) for g in ctx.prunable}
    if start == "greedy":
        if masks is None:
            raise ValueError("the 'greedy' start scores hard widths through the soft masks: pass masks")
        return coefficients_for(greedy_widths(ctx, masks, chunks, lazy), ctx.prunable)
    intra = [g for g in ctx.prunable if g.kind == "intra"]
    if len(intra) == len(ctx.prunable) or not intra:
        return None
    c = uniform_start(ctx, intra)
    coeffs = {g.label: (c if g.kind == "intra" else 0.0) for g in ctx.prunable}
    return coeffs if ctx.in_band(ctx.hard_sparsity(kept_widths(coeffs, ctx.groups))) else None


def _move_cost(ctx: SearchContext, widths: dict[str, int], label: str, step: int) -> float:
    """Parameters saved (step < 0) or added (step > 0) by changing one group's width by `step` channels."""
    moved = {**widths, label: widths[label] + step}
    return abs(ctx.params.hard_params(moved) - ctx.params.hard_params(widths))


def fix_up(ctx: SearchContext, masks: SoftMasks, widths: Mapping[str, int], persist: bool = False) -> dict[str, int]:
    """Greedy single-block moves (single channels unless the group has a block size) until the hard sparsity
    is in band (or no move helps).

    Too dense: remove the next block of the group whose block has the smallest mask per parameter
    saved. Too sparse: restore the removed block with the largest mask per parameter added. A move that
    overshoots the band by more than it gains ends the search, or with `persist` rules that group out.
    """
    widths = dict(widths)
    step = {g.label: g.block for g in masks.groups}
    limits = {g.label: (g.width - n_removed(ctx.problem.c_max, g.width, g.block), g.width) for g in masks.groups}
    with torch.no_grad():
        values = {g.label: masks.mask_by_rank(g) for g in masks.groups}
    overshooting: set[str] = set()
    for _ in range(sum(g.width for g in masks.groups) * (len(masks.groups) + 1 if persist else 1)):
        rho = ctx.hard_sparsity(widths)
        if ctx.acceptable(rho):
            break
        shrink = rho < ctx.aim
        movable = [label for label, (lo, hi) in limits.items()
                   if (widths[label] > lo if shrink else widths[label] < hi) and label not in overshooting]
        if not movable:
            break

        def score(label: str) -> float:
            n = len(values[label])
            channel = n - widths[label] if shrink else n - widths[label] - 1  # next to remove / last removed
            moved_by = -step[label] if shrink else step[label]
            value = float(values[label][channel]) / max(_move_cost(ctx, widths, label, moved_by), 1)
            return value if shrink else -value

        label = min(movable, key=score)
        moved = {**widths, label: widths[label] + (-step[label] if shrink else step[label])}
        if abs(ctx.hard_sparsity(moved) - ctx.aim) >= abs(rho - ctx.aim):
            if not persist:
                break  # overshoots the band by more than it gains
            overshooting.add(label)
            continue
        widths = moved
        overshooting.clear()
    return widths


def widen_to_band(ctx: SearchContext, masks: SoftMasks, widths: Mapping[str, int]) -> dict[str, int]:
    """When the search missed its window (e.g. [target, target + eps] holds no width vector of coarse blocks),
    look in the whole band |rho - target| <= eps: greedy block moves first (passing over groups whose next
    block overshoots), then the in-band width vector
    nearest to `widths` within two blocks per group. The widths come back unchanged if both fail."""
    floor = ctx.floor
    ctx.floor = None
    try:
        widened = fix_up(ctx, masks, widths, persist=True)
    finally:
        ctx.floor = floor
    if ctx.in_band(ctx.hard_sparsity(widened)):
        return widened
    return nearest_in_band(ctx, widths) or dict(widths)


def nearest_in_band(ctx: SearchContext, widths: Mapping[str, int], max_combinations: int = 200_000
                    ) -> dict[str, int] | None:
    """The in-band width vector that moves the fewest blocks away from `widths` (each prunable group by at most
    two blocks, or one if that grid would exceed `max_combinations`), ties broken by distance to the target."""
    radius = 2 if 5 ** len(ctx.prunable) <= max_combinations else 1
    if (2 * radius + 1) ** len(ctx.prunable) > max_combinations:
        return None
    labels = [g.label for g in ctx.prunable]
    floor = {g.label: g.width - n_removed(ctx.problem.c_max, g.width, g.block) for g in ctx.prunable}
    steps = torch.arange(-radius, radius + 1)
    moves = torch.cartesian_prod(*[steps] * len(labels)).view(-1, len(labels))
    base = ctx.params.vector(widths)[None].repeat(len(moves), 1)
    index = [ctx.params.labels.index(label) for label in labels]
    blocks = torch.tensor([g.block for g in ctx.prunable], dtype=torch.float64)
    base[:, index] += moves * blocks
    lo = torch.tensor([floor[label] for label in labels], dtype=torch.float64)
    hi = torch.tensor([g.width for g in ctx.prunable], dtype=torch.float64)
    valid = ((base[:, index] >= lo) & (base[:, index] <= hi)).all(1)
    rho = 1 - ctx.params.params_batch(base) / ctx.params.dense
    ok = valid & ((rho - ctx.target).abs() <= ctx.eps + 1e-12)
    if not ok.any():
        return None
    cost = moves.abs().sum(1).double() + (rho - ctx.target).abs()
    best = int(torch.where(ok, cost, torch.inf).argmin())
    return {label: int(w) for label, w in zip(ctx.params.labels, base[best].tolist())}


def widened(ctx: SearchContext, masks: SoftMasks, widths: Mapping[str, int], count: int, chunks: int
            ) -> dict[str, dict[str, int]]:
    """Up to `count` in-band variants of `widths`, keyed by the group they widen, one per group among its `count`
    narrowest (by kept fraction, at most half kept): that group's width is doubled (up to full width), and the
    groups still wider pay for it by the greedy start's removals, none cut below the grown group's kept fraction;
    `fix_up` then settles any overshoot. Variants that cannot be paid for are dropped. The search keeps
    bottleneck groups narrow where the surrogate underrates them; these variants let the task metric judge wider
    ones."""
    full = {g.label: g.width for g in ctx.prunable}
    narrow = sorted((label for label in full if widths[label] * 2 <= full[label]), key=lambda l: widths[l] / full[l])
    variants = {}
    for label in narrow[:count]:
        grown = {**widths, label: min(full[label], 2 * widths[label])}
        share = grown[label] / full[label]
        keep = {other: max(math.ceil(share * full[other]), 1) if widths[other] > share * full[other] else widths[other]
                for other in full}
        keep[label] = grown[label]
        paid = greedy_widths(ctx, masks, chunks, start=grown, keep=keep)
        if ctx.hard_sparsity(paid) < ctx.aim:
            continue
        variant = fix_up(ctx, masks, paid)
        if ctx.acceptable(ctx.hard_sparsity(variant)) and all(variant[l] >= keep[l] for l in keep):
            variants[label] = variant
    return variants


class _Tracker:
    """Keeps the best in-band hardened iterate, scored by the surrogate on held-out data."""

    def __init__(self, ctx: SearchContext, masks: SoftMasks, cfg: GradientConfig) -> None:
        self.ctx, self.masks, self.cfg = ctx, masks, cfg
        self.best: tuple[float, dict[str, int]] | None = None
        self.best_start = ""
        self.start = ""
        self.start_best: dict[str, float] = {}
        self.last: dict[str, int] = {}
        self.scored: dict[tuple, float] = {}

    def heldout(self, widths: dict[str, int]) -> float:
        key = tuple(sorted(widths.items()))
        if key not in self.scored:
            with self.masks.pinned(widths), torch.no_grad():
                self.scored[key] = float(self.ctx.problem.surrogate(self.masks.model, -1))
        return self.scored[key]

    def observe(self) -> None:
        coeffs = {label: float(c.detach()) for label, c in self.masks.c.items()}
        self.last = fix_up(self.ctx, self.masks, kept_widths(coeffs, self.ctx.groups))
        if self.cfg.select == "heldout" and self.ctx.acceptable(self.ctx.hard_sparsity(self.last)):
            score = self.heldout(self.last)
            self.start_best[self.start] = min(score, self.start_best.get(self.start, float("inf")))
            if self.best is None or score < self.best[0]:
                self.best, self.best_start = (score, self.last), self.start

    def choice(self) -> dict[str, int]:
        return self.best[1] if self.best is not None else self.last

    def leaders(self, count: int) -> list[tuple[float, dict[str, int]]]:
        """The `count` distinct in-band iterates with the lowest held-out surrogate, best first."""
        ranked = sorted(self.scored.items(), key=lambda item: item[1])[:count]
        return [(score, dict(key)) for key, score in ranked]


def select_by_metric(problem: PruningProblem, ctx: SearchContext, order: Mapping[str, torch.Tensor],
                     means: Mapping[str, torch.Tensor] | None, candidates: list[tuple[float, dict[str, int], str]]
                     ) -> tuple[dict[str, int], list[list]]:
    """The widths among `candidates` (surrogate, widths, origin) whose hardened model problem.metric rates
    highest, and a record [[surrogate, metric, widths, origin], ...] of every candidate scored."""
    record = []
    for surrogate, widths, origin in candidates:
        model, _, _ = harden_with_means(problem, ctx.groups, order, widths, means)
        record.append([surrogate, float(problem.metric(model.eval())), widths, origin])
    return max(record, key=lambda row: row[1])[2], record


def _penalty(rho: torch.Tensor, ctx: SearchContext, cfg: GradientConfig, multiplier: float) -> torch.Tensor:
    """Powell-Hestenes-Rockafellar term for the constraint |rho - target| - margin * eps <= 0."""
    violation = (rho - ctx.aim).abs() - cfg.band_margin * ctx.half_width
    return cfg.penalty / 2 * torch.clamp(violation + multiplier / cfg.penalty, min=0) ** 2


class _Descent:
    """One start's Adam descent on the coefficients, resumable: between calls of `run` its coefficients and
    optimiser state are kept apart from the masks, which all starts share."""

    def __init__(self, ctx: SearchContext, masks: SoftMasks, cfg: GradientConfig, tracker: _Tracker,
                 name: str, start: dict[str, float], seed: int) -> None:
        self.ctx, self.masks, self.cfg, self.tracker = ctx, masks, cfg, tracker
        self.name, self.start, self.seed = name, start, seed
        self.coeffs = dict(start)
        self.optimizer_state: dict | None = None
        self.step, self.multiplier, self.scale, self.task = 0, 0.0, 1.0, 0.0

    def run(self, until: int) -> None:
        """Continue the annealing schedule of `cfg.steps` steps up to step `until`."""
        masks, cfg, tracker = self.masks, self.cfg, self.tracker
        tracker.start = self.name
        with torch.no_grad():
            for label, value in self.coeffs.items():
                masks.c[label].fill_(value)
        optimizer = torch.optim.Adam(masks.parameters(), lr=cfg.lr)
        if self.optimizer_state is None:
            torch.manual_seed(self.seed)
            with torch.no_grad():
                self.scale = max(float(self.ctx.problem.surrogate(masks.model, 0)), 1e-12)
            tracker.observe()  # the start itself competes too
        else:
            optimizer.load_state_dict(self.optimizer_state)
        for step in range(self.step, until):
            self._step(optimizer, step)
            if (step + 1) % cfg.eval_every == 0 or step == cfg.steps - 1:
                tracker.observe()
        self.step = max(self.step, until)
        self.coeffs = {label: float(c.detach()) for label, c in masks.c.items()}
        self.optimizer_state = optimizer.state_dict()

    def _step(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        """One Adam step on surrogate / scale + band penalty at the annealed temperature of `step`."""
        ctx, masks, cfg = self.ctx, self.masks, self.cfg
        masks.temperature = cfg.t_start * (cfg.t_end / cfg.t_start) ** (step / max(cfg.steps - 1, 1))
        task = ctx.problem.surrogate(masks.model, step) / self.scale
        rho = ctx.params.sparsity(masks.expected_widths())
        loss = task + _penalty(rho, ctx, cfg, self.multiplier)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for c in masks.parameters():
                c.clamp_(0.0, ctx.problem.c_max)
        violation = abs(float(rho.detach()) - ctx.aim) - cfg.band_margin * ctx.half_width
        self.multiplier = max(0.0, self.multiplier + cfg.penalty * violation)
        self.task = float(task.detach())

    def summary(self) -> dict:
        return {"start": self.start, "steps": self.step, "surrogate_scale": self.scale,
                "final_task_loss": self.task, "multiplier": self.multiplier}


@register_method("gradient")
def gradient(problem: PruningProblem, target: float, *, eps: float = 0.01, seed: int = 0,
             **options) -> PruneResult:
    """Adam on one soft coefficient per group: surrogate + band penalty, annealed masks, harden, fix up."""
    check_options("gradient", options, [f.name for f in fields(GradientConfig)])
    cfg = GradientConfig(**options)
    if problem.surrogate is None:
        raise ValueError("method 'gradient' needs problem.surrogate(model, step) -> differentiable loss")
    if (cfg.final_candidates or cfg.final_widen) and problem.metric is None:
        raise ValueError("options final_candidates and final_widen of method 'gradient' need problem.metric "
                         "(the true task metric)")
    ctx = prepare(problem, target, eps)
    ctx.floor = target if cfg.at_least_target else None
    order = ranking(problem, ctx.groups, cfg.importance, seed)
    model = copy.deepcopy(problem.model).requires_grad_(False)
    means = consumer_means(problem, ctx.groups) if cfg.mean_replacement else None
    masks = SoftMasks(model, ctx.groups, order, temperature=cfg.t_start, straight_through=cfg.straight_through,
                      means=means)
    tracker = _Tracker(ctx, masks, cfg)
    with torch.random.fork_rng(devices=[]), masks:
        descents = []
        for name in cfg.starts:
            coeffs = start_coefficients(ctx, name, masks, cfg.greedy_chunks, cfg.lazy_greedy)
            if coeffs is not None:
                descents.append(_Descent(ctx, masks, cfg, tracker, name, coeffs, seed))
        probe = cfg.probe_steps if 0 < cfg.probe_steps < cfg.steps and len(descents) > 1 else cfg.steps
        for descent in descents:
            descent.run(probe)
        if probe < cfg.steps:
            leader = min(descents, key=lambda d: tracker.start_best.get(d.name, float("inf")))
            leader.run(cfg.steps)
        widths = tracker.choice()
        final: list[list] = []
        if (cfg.final_candidates or cfg.final_widen) and tracker.best is not None:
            pool = [(score, leader, "search") for score, leader in tracker.leaders(max(cfg.final_candidates, 1))]
            for label, variant in widened(ctx, masks, widths, cfg.final_widen, cfg.greedy_chunks).items():
                if all(variant != known for _, known, _ in pool):
                    pool.append((tracker.heldout(variant), variant, f"widened {label}"))
            widths, final = select_by_metric(problem, ctx, order, means, pool)
        band_fallback = not ctx.acceptable(ctx.hard_sparsity(widths))
        if band_fallback:
            widths = widen_to_band(ctx, masks, widths)
    pruned, history, replaced = harden_with_means(problem, ctx.groups, order, widths, means)
    info = {"band_fallback": band_fallback, "starts_run": {d.name: d.summary() for d in descents},
            "heldout_best": tracker.best[0] if tracker.best else None, "best_start": tracker.best_start,
            "start_heldout": [[name, score] for name, score in tracker.start_best.items()],
            "final_selection": final, **asdict(cfg)}
    return finish(ctx, "gradient", pruned, measured_widths(pruned, ctx.groups),
                  coefficients_for(widths, ctx.groups), evaluations=len(final), history=history, info=info,
                  replaced=replaced)
