"""Rank check of the TD-MPC surrogates: do they order width configurations as the planner's return does?

For one task, the variants are the committed gradient solutions at the given levels (`widths` of
results/tdmpc-<task>/metrics.csv, one seed, both latent settings), `ctrlprune ablate`'s component variants of
the solution at the middle level with the latent prunable, and random width exchanges of the middle level's
solutions that keep their parameter count (so their sparsity stays in the band). Each variant is scored by
the planner's return on held-out episodes (env seeds RANK_SEED + i, used nowhere else) and by every scorer of
SCORERS; the report gives the Spearman correlation of each scorer's negated score (lower is better for all of
them) with the return, over all variants and over those at the middle level's sparsity.

`python -m benchmarks.surrogate_rank --help`; docs/METHOD.md ("Ranking the surrogate") has the figures.
"""
from __future__ import annotations

import argparse
import copy
import csv
import io
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
from scipy.stats import spearmanr

from benchmarks.ablation import WidthModels, component_variants, method_importance, parse_widths
from benchmarks.cli import describe_os_error, raised_by_a_check
from benchmarks.sweep.store import ResultsFolder, write_atomic
from benchmarks.tdmpc_evaluators import replace_section
from benchmarks.usecases import get_usecase
from benchmarks.usecases.tdmpc.surrogate import SurrogateWeights
from benchmarks.usecases.tdmpc.usecase import TDMPCUseCase
from pruning import Group, ParamModel

RANK_SEED = 40_000
"""Rank-check episode i resets the env with RANK_SEED + i (cells, calibration and fine-tuning use other seeds)."""
SCORE_BATCHES = 8
"""Surrogate batches (the search's training batches 0..7) that the batch-averaged scorers use."""
TITLE = "# Rank check of the TD-MPC surrogates"
CSV_FIELDS = ("name", "origin", "latent_prunable", "sparsity", "widths", "episodes", "return", "return_std")


@dataclass
class Variant:
    """A width configuration of the rank check and what it scores."""

    name: str
    origin: str
    widths: dict[str, int]
    latent_prunable: bool
    sparsity: float = float("nan")
    returns: tuple[float, float] | None = None
    scores: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Variant({self.name!r}, sparsity={self.sparsity:.3f}, returns={self.returns})"

    @property
    def widths_text(self) -> str:
        return ";".join(f"{label}:{width}" for label, width in self.widths.items())


# -- variants ------------------------------------------------------------------------------------------
def committed_solutions(result_dir: Path, levels: list[float], seed: int, groups: list[Group]) -> list[Variant]:
    """The gradient cells of `result_dir/metrics.csv` at `levels` and `seed`, latent prunable then kept."""
    rows = [r for r in ResultsFolder(result_dir).rows() if r["method"] == "gradient" and r["seed"] == seed]
    found = []
    for prunable in (True, False):
        for level in levels:
            match = [r for r in rows if r["latent_prunable"] == prunable and abs(r["target_sparsity"] - level) < 1e-9]
            if not match:
                raise ValueError(f"no gradient cell at sparsity {level}, seed {seed}, latent "
                                 f"{'prunable' if prunable else 'kept'} in {result_dir}/metrics.csv")
            latent = "prunable" if prunable else "kept"
            found.append(Variant(f"ρ {level:g}, latent {latent}", "committed",
                                 parse_widths(str(match[0]["widths"]), groups), prunable))
    return found


def ablation_variants(solution: Variant, groups: list[Group]) -> list[Variant]:
    """`ctrlprune ablate`'s variants of `solution` (one component, or the latent, restored), the solution left out."""
    variants = component_variants(groups, solution.widths)
    return [Variant(f"{solution.name} {name}", "ablate", widths, solution.latent_prunable)
            for name, widths in variants.items() if name != "as found"]


def exchange_widths(widths: Mapping[str, int], groups: list[Group], params: ParamModel, rng: random.Random,
                    moves: int, latent_prunable: bool) -> dict[str, int]:
    """`widths` after `moves` random exchanges: one group grows by 10-50 % of its full width, another shrinks
    until the parameter count is back at or below the original (the grown one gives back what it must)."""
    budget, full = params.hard_params(widths), {g.label: g.width for g in groups}
    movable = [g.label for g in groups if latent_prunable or g.kind == "intra"]
    result = dict(widths)
    for _ in range(moves):
        grow, shrink = rng.sample(movable, 2)
        result[grow] = min(full[grow], result[grow] + max(1, round(rng.uniform(0.1, 0.5) * full[grow])))
        for label in (shrink, grow):
            while params.hard_params(result) > budget and result[label] > 1:
                result[label] -= 1
    return result


def exchange_variants(solutions: list[Variant], groups: list[Group], params: ParamModel, count: int,
                      seed: int) -> list[Variant]:
    """Up to `count` width exchanges (1-3 moves each) of every solution, seeded, none equal to its solution
    (fewer where 100 tries per exchange find no move, e.g. every movable group whole)."""
    rng, variants = random.Random(seed), []
    for solution in solutions:
        made = 0
        for _ in range(100 * count):
            if made == count:
                break
            widths = exchange_widths(solution.widths, groups, params, rng, rng.randint(1, 3), solution.latent_prunable)
            if widths != solution.widths:
                made += 1
                variants.append(Variant(f"{solution.name} exchange {made}", "exchange", widths,
                                        solution.latent_prunable))
    return variants


def distinct(variants: list[Variant]) -> list[Variant]:
    """`variants` without those whose widths an earlier one has (its name then says so)."""
    kept: dict[str, Variant] = {}
    for variant in variants:
        if variant.widths_text in kept:
            kept[variant.widths_text].name += f" (= {variant.name})"
        else:
            kept[variant.widths_text] = variant
    return list(kept.values())


# -- scorers -------------------------------------------------------------------------------------------
class Scorers:
    """The scores of a pruned model; lower is better for every one of them.

    - `surrogate`: the search's surrogate on its held-out batch (what picks the search's best iterate);
    - `surrogate, 8 batches`: its mean over the training batches 0..7 (is one batch too noisy?);
    - `planner_regret`: the use case's diagnostic (the dense critic's value of the dense planner's first
      action minus that of the pruned planner's, full MPPI from about 200 visited states);
    - `soft_regret`: over each state's candidate sequences of the surrogate's batches, the dense value of the
      dense planner's weights exp(temperature * value) minus that of the pruned planner's weights, in units
      of the dense values' spread (differentiable);
    - `elite_value`: the centered value error weighted by the dense planner's weights (the error where the
      planner looks), in the same units (differentiable);
    - `-calibration return`: the negated return that the gradient search's final selection compares
      candidates by (`problem.metric`: `grid_episodes` episodes on the calibration seeds, not the held-out ones);
    - `term: <name>`: one term of the surrogate alone, at weight 1, mean over the training batches 0..7
      (`value`: the centered value error, `twin`, `pi`, `choice`, `reward`: SurrogateWeights).
    """

    terms = ("value", "twin", "pi", "choice", "reward")
    names = ("surrogate", "surrogate, 8 batches", "planner_regret", "soft_regret", "elite_value",
             "-calibration return", *(f"term: {term}" for term in terms))

    def __init__(self, usecase: TDMPCUseCase, built: WidthModels, seed: int) -> None:
        self.usecase, self.built, self.seed = usecase, built, seed
        agent = usecase.agent()
        self.discount, self.temperature = agent.cfg.discount, agent.cfg.temperature
        self.batches = [usecase.surrogate_batch(step, seed) for step in range(SCORE_BATCHES)]
        self.dense_values = [self._values(agent.model, start, sequences) for start, sequences in self.batches]

    def __repr__(self) -> str:
        return f"Scorers({', '.join(self.names)})"

    def _values(self, model: torch.nn.Module, start: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
        """The planner's value estimates [states, candidates] of a batch's sequences under `model`."""
        with torch.no_grad():
            z = model.h(self.usecase.visits().obs[start]).repeat_interleave(self.usecase.candidates, dim=0)
            return model.imagine(z, sequences, self.discount).value().view(len(start), -1)

    def score(self, model: torch.nn.Module, known: Mapping[str, float] | None = None) -> dict[str, float]:
        """Every scorer's score of `model`; those in `known` (from an earlier run) are taken as they are."""
        scores = dict(known or {})
        if "surrogate" not in scores:
            scores["surrogate"] = float(self.built.surrogate(model))
        if "surrogate, 8 batches" not in scores:
            with torch.no_grad():
                surrogate = self.built.problem.surrogate
                scores["surrogate, 8 batches"] = sum(float(surrogate(model, step))
                                                     for step in range(SCORE_BATCHES)) / SCORE_BATCHES
        if "planner_regret" not in scores:
            scores["planner_regret"] = self.usecase.diagnostics(model, self.seed)["planner_regret"]
        if "-calibration return" not in scores:
            scores["-calibration return"] = -self.built.problem.metric(model)
        if "soft_regret" not in scores or "elite_value" not in scores:
            scores.update(self._weighted_terms(model))
        if any(f"term: {term}" not in scores for term in self.terms):
            scores.update(self._surrogate_terms(model))
        return {name: float(f"{scores[name]:.6g}") for name in self.names}  # as the csv keeps them: ties stay ties

    def _surrogate_terms(self, model: torch.nn.Module) -> dict[str, float]:
        """Each term of the surrogate alone: the surrogate with only that weight set (1) minus the value term."""
        def mean_loss(**weights: float) -> float:
            alone = copy.copy(self.built.problem.surrogate)
            alone.weights = SurrogateWeights(**{term: weights.get(term, 0.0) for term in self.terms if term != "value"},
                                             proposal=0.0)
            with torch.no_grad():
                return sum(float(alone(model, step)) for step in range(SCORE_BATCHES)) / SCORE_BATCHES

        value = mean_loss()
        return {"term: value": value,
                **{f"term: {term}": mean_loss(**{term: 1.0}) - value for term in self.terms if term != "value"}}

    def _weighted_terms(self, model: torch.nn.Module) -> dict[str, float]:
        """`soft_regret` and `elite_value`, averaged over the batches."""
        regret, elite = [], []
        for (start, sequences), dense in zip(self.batches, self.dense_values):
            pruned = self._values(model, start, sequences)
            spread = (dense - dense.mean(1, keepdim=True)).pow(2).mean().clamp_min(1e-8)
            dense_w = torch.softmax(self.temperature * dense, dim=1)
            pruned_w = torch.softmax(self.temperature * pruned, dim=1)
            regret.append(float(((dense_w - pruned_w) * dense).sum(1).mean() / spread.sqrt()))
            error = (pruned - pruned.mean(1, keepdim=True)) - (dense - dense.mean(1, keepdim=True))
            elite.append(float((dense_w * error.pow(2)).sum(1).mean() / spread))
        return {"soft_regret": sum(regret) / len(regret), "elite_value": sum(elite) / len(elite)}


# -- the check -----------------------------------------------------------------------------------------
@dataclass
class Measured:
    """What an earlier run's csv holds for one variant: its return and the scores of the scorers it had."""

    returns: tuple[float, float]
    scores: dict[str, float]


def stored_measurements(path: Path, episodes: int) -> dict[tuple[bool, str], Measured]:
    """The rows of an earlier run's csv with the same number of episodes, by (latent prunable, widths)."""
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {(row["latent_prunable"] == "True", row["widths"]):
                Measured((float(row["return"]), float(row["return_std"])),
                         {name: float(row[name]) for name in Scorers.names if row.get(name)})
                for row in csv.DictReader(fh) if int(row["episodes"]) == episodes}


def held_out_returns(usecase: TDMPCUseCase, model: torch.nn.Module, episodes: int) -> tuple[float, float]:
    """Mean and std of the return over `episodes` lock-step episodes from env seed RANK_SEED on."""
    result = usecase._lockstep.run(usecase.wrap(model), episodes, RANK_SEED)
    return result.mean, result.std


def spearman(variants: list[Variant], scorer: str) -> float:
    """Spearman correlation of the negated score with the return (1: the scorer orders them as the return); NaN
    with fewer than 3 variants or a constant column."""
    scores, returns = [-v.scores[scorer] for v in variants], [v.returns[0] for v in variants]
    if len(variants) < 3 or len(set(scores)) < 2 or len(set(returns)) < 2:
        return float("nan")
    return float(spearmanr(scores, returns).statistic)


def run_check(usecase: TDMPCUseCase, result_dir: Path, levels: list[float], seed: int, exchanges: int,
              episodes: int, csv_path: Path, log: Callable[[str], None] = print) -> list[Variant]:
    """Build the variants, score each (returns and scores already in `csv_path` are reused), rewrite `csv_path`
    after every variant, and return them."""
    built = WidthModels(usecase, seed, True, method_importance(usecase, "gradient"))
    solutions = committed_solutions(result_dir, levels, seed, built.groups)
    middle = levels[len(levels) // 2]
    at_middle = [s for s in solutions if s.name.startswith(f"ρ {middle:g},")]
    variants = distinct([*solutions, *ablation_variants(at_middle[0], built.groups),
                         *exchange_variants(at_middle, built.groups, built.params, exchanges, seed)])
    scorers, stored = Scorers(usecase, built, seed), stored_measurements(csv_path, episodes)
    for i, variant in enumerate(variants):
        model = built.model(variant.widths)
        variant.sparsity = built.sparsity(variant.widths)
        earlier = stored.get((variant.latent_prunable, variant.widths_text))
        variant.scores = scorers.score(model, earlier.scores if earlier else None)
        variant.returns = earlier.returns if earlier else held_out_returns(usecase, model, episodes)
        log(f"[{i + 1}/{len(variants)}] {variant.name}: sparsity {variant.sparsity:.3f}, return "
            f"{variant.returns[0]:.1f} ± {variant.returns[1]:.1f}, "
            + ", ".join(f"{k} {v:.4f}" for k, v in variant.scores.items()))
        write_csv(csv_path, variants[: i + 1], episodes)
    return variants


def write_csv(path: Path, variants: list[Variant], episodes: int) -> None:
    """One row per scored variant: CSV_FIELDS, then a column per scorer."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([*CSV_FIELDS, *Scorers.names])
    for v in variants:
        writer.writerow([v.name, v.origin, v.latent_prunable, f"{v.sparsity:.6f}", v.widths_text, episodes,
                         f"{v.returns[0]:.4f}", f"{v.returns[1]:.4f}", *(f"{v.scores[k]:.6g}" for k in Scorers.names)])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.getvalue())


def bootstrap_interval(variants: list[Variant], scorer: str, draws: int = 1000, seed: int = 0) -> tuple[float, float]:
    """5th and 95th percentile of `spearman` over `draws` resamples of the variants (with replacement; resamples
    where it is undefined are left out): how much the figure owes to which variants happen to be in the set."""
    rng = random.Random(seed)
    values = sorted(value for value in (spearman(rng.choices(variants, k=len(variants)), scorer) for _ in range(draws))
                    if value == value)
    if not values:
        return float("nan"), float("nan")
    return values[int(0.05 * (len(values) - 1))], values[int(0.95 * (len(values) - 1))]


def with_interval(variants: list[Variant], scorer: str) -> str:
    low, high = bootstrap_interval(variants, scorer)
    return f"{spearman(variants, scorer):+.2f} [{low:+.2f}, {high:+.2f}]"


WORKING = 0.8
"""The variants that work: a return of at least this fraction of the highest variant's."""


def report_section(task: str, variants: list[Variant], middle: float, eps: float, episodes: int, command: str,
                   csv_path: Path) -> str:
    """Markdown: the Spearman table (all variants; those within `eps` of `middle`; those that work) and every
    variant's row."""
    near = [v for v in variants if abs(v.sparsity - middle) <= eps]
    best = max(v.returns[0] for v in variants)
    working = [v for v in variants if v.returns[0] >= WORKING * best]
    lines = [f"## {task}", "", f"`{command}`", "", f"Every row: `{csv_path}`. Spearman of the negated score with the "
             f"return (1: the scorer orders the variants as the return does), over all {len(variants)} variants, "
             f"over the {len(near)} within {eps:g} of sparsity {middle:g}, and over the {len(working)} that work "
             f"(return ≥ {WORKING:g} × the highest, {best:.1f}). In brackets: the 5th and 95th percentile over 1000 "
             f"bootstrap resamples of the variants. Returns: mean ± std over {episodes} lock-step episodes from env "
             f"seed {RANK_SEED} on (held out).", "",
             f"| scorer | Spearman, all | Spearman, at ρ {middle:g} | Spearman, working |", "|---|---|---|---|"]
    for name in Scorers.names:
        lines.append(f"| {name} | {with_interval(variants, name)} | {with_interval(near, name)} | "
                     f"{with_interval(working, name)} |")
    lines += ["", "| variant | sparsity | return | " + " | ".join(Scorers.names) + " |",
              "|" + "---|" * (3 + len(Scorers.names))]
    for v in variants:
        scores = " | ".join(f"{v.scores[k]:.4f}" for k in Scorers.names)
        lines.append(f"| {v.name} | {v.sparsity:.3f} | {v.returns[0]:.1f} ± {v.returns[1]:.1f} | {scores} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.surrogate_rank", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, help="a TD-MPC task with committed gradient cells, e.g. walker-walk")
    ap.add_argument("--results", type=Path, help="its results folder (default results/tdmpc-<task>)")
    ap.add_argument("--checkpoint", default="", help="dense checkpoint (default: the shipped one)")
    ap.add_argument("--levels", default="0.4,0.5,0.6", help="levels of the committed solutions (default 0.4,0.5,0.6)")
    ap.add_argument("--seed", type=int, default=0, help="cell seed of the solutions; also seeds the exchanges")
    ap.add_argument("--exchanges", type=int, default=3, help="width exchanges per middle-level solution (default 3)")
    ap.add_argument("--episodes", type=int, default=3, help="held-out episodes per variant (default 3)")
    ap.add_argument("--out", type=Path, default=Path("results/surrogate_rank"),
                    help="folder of the per-task csv; the markdown goes to <out>.md (the task's section replaced)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        levels = [float(v) for v in args.levels.split(",") if v.strip()]
        if not levels or args.episodes < 1 or args.exchanges < 0:
            raise ValueError("--levels needs a level, --episodes at least 1, --exchanges at least 0")
        result_dir = args.results or Path(f"results/tdmpc-{args.task}")
        if not (result_dir / "metrics.csv").is_file():
            raise ValueError(f"no metrics.csv in {result_dir}")
        usecase = get_usecase(f"tdmpc-{args.task}", args.checkpoint, evaluator="lockstep")
        csv_path = args.out / f"{args.task}.csv"
        variants = run_check(usecase, result_dir, levels, args.seed, args.exchanges, args.episodes, csv_path)
    except (ValueError, RuntimeError) as err:
        if not raised_by_a_check(err):
            raise  # a bug, not the input: its traceback
        print(f"surrogate_rank: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"surrogate_rank: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    command = " ".join(["python -m benchmarks.surrogate_rank", *(sys.argv[1:] if argv is None else argv)])
    middle = levels[len(levels) // 2]
    section = report_section(args.task, variants, middle, 0.011, args.episodes, command, csv_path)
    md_path = args.out.with_suffix(".md")
    document = md_path.read_text() if md_path.is_file() else ""
    write_atomic(md_path, replace_section(document, args.task, section, title=TITLE))
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
