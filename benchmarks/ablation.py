"""Component ablation of a pruned solution: its task metric with one component at a time restored to full width.

A search trades width between components; this shows what each cut costs. The model is rebuilt from the
stored widths and the within-group ranking that grid and gradient share, so the variants differ from the
solution only in the restored component.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from benchmarks.sweep.store import ResultsFolder
from benchmarks.usecases import UseCase
from pruning import Group, ParamModel, build_groups, consumer_means, ranking
from pruning.coefficients import harden_with_means
from pruning.registry import WIDTH, method_info, methods_of


@dataclass
class Variant:
    """One row of an ablation: a width configuration and what it scores."""

    name: str
    widths: dict[str, int]
    sparsity: float
    metric: float
    spread: float
    surrogate: float | None
    diagnostics: dict[str, float]

    def __repr__(self) -> str:
        return f"Variant({self.name!r}, sparsity={self.sparsity:.3f}, metric={self.metric:.2f} ± {self.spread:.2f})"


def parse_widths(text: str, groups: list[Group]) -> dict[str, int]:
    """`"encoder.0:182;encoder.2:50;..."` (the `widths` column of metrics.csv) as {group: kept width}."""
    known = {g.label: g.width for g in groups}
    widths: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        label, _, value = part.partition(":")
        if label not in known:
            raise ValueError(f"unknown group {label!r} in --widths; groups: {', '.join(known)}")
        if not value.isdigit() or not 1 <= int(value) <= known[label]:
            raise ValueError(f"width of {label!r} must be an integer in [1, {known[label]}], got {value!r}")
        widths[label] = int(value)
    return {label: widths.get(label, width) for label, width in known.items()}


def stored_cell(result_dir: Path, method: str, sparsity: float, seed: int, latent_prunable: bool) -> tuple[str, str]:
    """(model, widths) of one cell of `result_dir/metrics.csv`."""
    check_width_method(method)
    folder = ResultsFolder(result_dir)
    rows = [r for r in folder.rows() if r["method"] == method and r["seed"] == seed
            and r["latent_prunable"] == latent_prunable and abs(r["target_sparsity"] - sparsity) < 1e-9]
    if not rows:
        raise ValueError(f"no {method} cell at sparsity {sparsity}, seed {seed}, latent prunable {latent_prunable} "
                         f"in {folder.csv_path}")
    return str(rows[0]["model"]), str(rows[0]["widths"])


def check_width_method(method: str) -> None:
    if method not in methods_of(WIDTH):
        raise ValueError(f"ablate rebuilds models from widths and the shared ranking of {', '.join(methods_of(WIDTH))}; "
                         f"{method!r} chooses its channels its own way")


def method_setting(usecase: UseCase, method: str, name: str):
    """Option `name` of `method` on this use case (its options, else the method's default)."""
    default = getattr(method_info(method).config, name)
    return usecase.method_options(method).get(name, default)


def method_importance(usecase: UseCase, method: str) -> str:
    """The within-group ranking `method` uses on this use case."""
    return str(method_setting(usecase, method, "importance"))


def component_variants(groups: list[Group], widths: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """The solution, then one variant per component with its intra-component groups whole, then one with the
    inter-component (latent) groups whole; variants equal to the solution are left out."""
    full = {g.label: g.width for g in groups}
    variants = {"as found": dict(widths)}
    components = list(dict.fromkeys(c for g in groups if g.kind == "intra" for c in g.components))
    selections = [(f"+{c}", [g for g in groups if g.kind == "intra" and c in g.components]) for c in components]
    selections.append(("+latent", [g for g in groups if g.kind == "inter"]))
    for name, restored in selections:
        variant = {**widths, **{g.label: full[g.label] for g in restored}}
        if variant != dict(widths):
            variants[name] = variant
    return variants


class WidthModels:
    """Models rebuilt from kept widths as a width-searching method prunes: the use case's pruning problem, its
    groups, the method's within-group ranking and (if the method uses it) mean replacement."""

    def __init__(self, usecase: UseCase, seed: int, latent_prunable: bool, importance: str,
                 mean_replacement: bool = False) -> None:
        self.problem = usecase.problem(usecase.load(), seed, latent_prunable)
        self.groups = build_groups(self.problem)
        self.params = ParamModel(self.problem.model, self.groups)
        self.order = ranking(self.problem, self.groups, importance, seed)
        self.means = consumer_means(self.problem, self.groups) if mean_replacement else None

    def __repr__(self) -> str:
        return f"WidthModels({len(self.groups)} groups, {self.params.dense:,} dense parameters)"

    def model(self, widths: Mapping[str, int]) -> torch.nn.Module:
        """The pruned model (eval mode) that keeps `widths`."""
        model, _, _ = harden_with_means(self.problem, self.groups, self.order, widths, self.means)
        return model.eval()

    def sparsity(self, widths: Mapping[str, int]) -> float:
        return 1.0 - self.params.hard_params(widths) / self.params.dense

    def surrogate(self, model: torch.nn.Module) -> float | None:
        """The problem's surrogate of `model` on its held-out batch (None without a surrogate)."""
        if self.problem.surrogate is None:
            return None
        with torch.no_grad():
            return float(self.problem.surrogate(model, -1))


def ablate(usecase: UseCase, widths_text: str, seed: int, latent_prunable: bool, importance: str,
           variants: bool = True, mean_replacement: bool = False) -> list[Variant]:
    """Score the solution `widths_text` and (unless `variants` is False) its component variants with the use
    case's task metric, pruned as the method prunes (its ranking, and mean replacement if it uses it)."""
    built = WidthModels(usecase, seed, latent_prunable, importance, mean_replacement)
    rows = []
    solution = parse_widths(widths_text, built.groups)
    configurations = component_variants(built.groups, solution) if variants else {"as found": solution}
    for name, widths in configurations.items():
        model = built.model(widths)
        surrogate = built.surrogate(model)
        torch.manual_seed(seed)
        metric, spread = usecase.evaluate(model, seed)
        rows.append(Variant(name, widths, built.sparsity(widths), metric, spread, surrogate,
                            usecase.diagnostics(model, seed)))
    return rows


def ablation_table(rows: list[Variant], metric_name: str) -> str:
    """Markdown: one row per variant with sparsity, metric, the surrogate on held-out data and the use case's
    diagnostics (e.g. planner regret)."""
    extra = list(dict.fromkeys(k for r in rows for k in r.diagnostics))
    header = ["variant", "sparsity", metric_name, "surrogate (held-out)", *extra, "widths"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        surrogate = "" if r.surrogate is None else f"{r.surrogate:.4f}"
        diagnostics = [f"{r.diagnostics[k]:.4f}" if k in r.diagnostics else "" for k in extra]
        widths = " ".join(f"{k}:{v}" for k, v in r.widths.items())
        cells = [r.name, f"{r.sparsity:.3f}", f"{r.metric:.2f} ± {r.spread:.2f}", surrogate, *diagnostics, widths]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
