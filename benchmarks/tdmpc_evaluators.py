"""The lock-step evaluator against the committed one, side by side: run a TD-MPC suite (or part of it) with
the use-case option `evaluator = "lockstep"` into results/<suite>-lockstep, then compare each cell's return
with the stored cell of results/<suite>. `python -m benchmarks.tdmpc_evaluators --help`."""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
import statistics
import sys
from pathlib import Path

from benchmarks.sweep.runner import RESULTS_ROOT, run_suite
from benchmarks.sweep.store import read_csv, write_atomic
from benchmarks.sweep.suite import Suite, load_suite

KEY = ("method", "latent_prunable", "target_sparsity", "seed")


def lockstep_suite(suite: Suite) -> Suite:
    """`suite` under another name, scored by the lock-step evaluator (part of each cell's identity)."""
    return dataclasses.replace(suite, name=f"{suite.name}-lockstep",
                               model_options={**suite.model_options, "evaluator": "lockstep"})


def _standard_error(row: dict, episodes: int) -> float:
    """Standard error of a difference of two means of `episodes` returns with the row's episode spread."""
    return math.sqrt(2.0 / episodes) * float(row["metric_std"])


def seed_spread(csv: Path) -> dict[tuple, float]:
    """Std over seeds of the metric of each (method, latent setting, level) of a metrics.csv."""
    by_setting: dict[tuple, list[float]] = {}
    for row in read_csv(csv):
        by_setting.setdefault(tuple(row[k] for k in KEY[:3]), []).append(row["metric"])
    return {k: statistics.pstdev(v) for k, v in by_setting.items() if len(v) > 1}


def compare(old_csv: Path, new_csv: Path, episodes: int, spread: dict[tuple, float]) -> tuple[list[dict], str]:
    """Rows present in both metrics.csv files, joined on method, latent setting, level and seed, and the
    markdown table of old, new, new - old, (new - old) / its standard error from the episode spread, the
    spread over seeds of the same setting (from `spread`, where known) and whether both pruned to the same
    layer widths."""
    old = {tuple(r[k] for k in KEY): r for r in read_csv(old_csv)}
    joined = []
    for new in read_csv(new_csv):
        key = tuple(new[k] for k in KEY)
        if key in old:
            diff = new["metric"] - old[key]["metric"]
            se = _standard_error(old[key], episodes)
            joined.append({"key": key, "old": old[key]["metric"], "new": new["metric"], "diff": diff,
                           "z": diff / se if se > 0 else float("nan"), "old_std": old[key]["metric_std"],
                           "seed_std": spread.get(key[:3], float("nan")),
                           "same_widths": str(new["widths"]) == str(old[key]["widths"])})
    lines = ["| method | latent | rho | seed | old | new | new - old | episode std (old) | z | seed std | widths |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for j in joined:
        method, latent, level, seed = j["key"]
        lines.append(f"| {method} | {'prunable' if latent else 'kept'} | {level:g} | {seed} | {j['old']:.1f} | "
                     f"{j['new']:.1f} | {j['diff']:+.1f} | {j['old_std']:.1f} | {j['z']:+.2f} | "
                     f"{j['seed_std']:.1f} | {'same' if j['same_widths'] else '**other**'} |")
    return joined, "\n".join(lines) + "\n"


TITLE = "# Lock-step vs committed evaluation"


def replace_section(document: str, heading: str, section: str, title: str = TITLE) -> str:
    """`document` (a `title` line, then `## ` sections) with the section under `heading` replaced by `section`,
    or `section` appended; other sections are kept in their order. A document without `title` starts anew."""
    sections: dict[str, str] = {}
    if document.startswith(title + "\n"):
        for chunk in re.split(r"^(?=## )", document, flags=re.M)[1:]:
            sections[chunk.splitlines()[0]] = chunk.rstrip("\n") + "\n"
    sections[f"## {heading}"] = section.rstrip("\n") + "\n"
    return title + "\n\n" + "\n".join(sections.values())


def summary(joined: list[dict]) -> str:
    """Counts within two standard errors and within twice the seed spread, the mean difference, and the
    cells farthest out on each scale."""
    within = sum(abs(j["z"]) <= 2 for j in joined)
    known = [j for j in joined if j["seed_std"] == j["seed_std"]]
    within_seeds = sum(abs(j["diff"]) <= 2 * j["seed_std"] for j in known)
    mean_diff = sum(j["diff"] for j in joined) / max(len(joined), 1)
    other = [j for j in joined if not j["same_widths"]]
    same_z = [j["z"] for j in joined if j["same_widths"] and j["z"] == j["z"]]
    text = (f"{within} of {len(joined)} cells within |z| <= 2; {within_seeds} of {len(known)} with a known seed "
            f"spread within twice it; mean new - old {mean_diff:+.1f}. {len(other)} cell(s) pruned to other widths "
            f"(the search saw other calibration states or grid scores); over the {len(same_z)} cells with the same "
            f"widths, mean z {statistics.fmean(same_z) if same_z else float('nan'):+.2f}, "
            f"{sum(z > 0 for z in same_z)} above and {sum(z < 0 for z in same_z)} below zero.")
    describe = lambda j: (f"{j['key'][0]}, latent {'prunable' if j['key'][1] else 'kept'}, rho {j['key'][2]:g}, "
                          f"seed {j['key'][3]}: {j['old']:.1f} -> {j['new']:.1f}")
    if joined:
        worst = max(joined, key=lambda j: abs(j["z"]) if j["z"] == j["z"] else 0.0)
        text += f" Largest |z|: {describe(worst)} (z {worst['z']:+.2f})."
    if known:
        worst = max(known, key=lambda j: abs(j["diff"]) / j["seed_std"] if j["seed_std"] > 0 else math.inf)
        text += f" Largest difference against the seed spread: {describe(worst)} (seed std {worst['seed_std']:.1f})."
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the lock-step cells (resumable; not with --compare-only), then write the side-by-side table as the
    suite's section of --out (other suites' sections are kept)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tdmpc_evaluators", description=__doc__)
    ap.add_argument("--suite", default="tdmpc-quick", help="a TD-MPC suite whose results are stored")
    ap.add_argument("--methods", help="comma-separated subset of methods")
    ap.add_argument("--sparsities", help="comma-separated subset of levels")
    ap.add_argument("--seeds", help="comma-separated subset of seeds")
    ap.add_argument("--workers", type=int, help="cells in parallel (default: the suite's)")
    ap.add_argument("--root", type=Path, default=RESULTS_ROOT, help="results root (default results)")
    ap.add_argument("--out", type=Path, default=Path("results/tdmpc_evaluators.md"),
                    help="markdown file; the suite's section is replaced, the others kept")
    ap.add_argument("--compare-only", action="store_true",
                    help="compute nothing: compare the lock-step cells stored so far")
    ap.add_argument("--spread-from", type=Path, default=Path("results/tdmpc-cartpole-swingup/metrics.csv"),
                    help="metrics.csv whose spread over seeds each difference is set against")
    args = ap.parse_args(argv)
    split = lambda text, kind: [kind(v) for v in text.split(",")] if text else None
    suite = load_suite(args.suite, methods=split(args.methods, str), sparsities=split(args.sparsities, float),
                       seeds=split(args.seeds, int), workers=args.workers)
    new = lockstep_suite(suite)
    flags = [f for f in (sys.argv[1:] if argv is None else argv) if f != "--compare-only"]
    command = " ".join(["python -m benchmarks.tdmpc_evaluators", *flags])
    if not args.compare_only:
        run_suite(new, root=args.root, quiet=True, command=command)
    episodes = int(suite.model_options.get("episodes", 10))
    spread = seed_spread(args.spread_from) if args.spread_from.is_file() else {}
    joined, table = compare(args.root / suite.name / "metrics.csv", args.root / new.name / "metrics.csv", episodes,
                            spread)
    section = (f"## {suite.name}\n\n`{command}`\n\n"
               f"Old: the stored cells of results/{suite.name} (episodes one after another, torch's global noise). "
               f"New: the same cells with `evaluator = \"lockstep\"` (results/{new.name}: all {episodes} episodes "
               "of a cell in one batched plan per step, per-episode noise; grid candidates scored the same way). "
               "z is (new - old) over the standard error of a difference of two means of "
               f"{episodes} episodes with the old cell's episode spread. Seed std: the spread over seeds of the same "
               f"method, latent setting and level in {args.spread_from}.\n\n{summary(joined)}\n\n" + table)
    document = args.out.read_text() if args.out.is_file() else ""
    write_atomic(args.out, replace_section(document, suite.name, section))
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
