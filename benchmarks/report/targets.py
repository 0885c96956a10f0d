"""The pruning targets of the TD-MPC suites, judged from their metrics.csv alone.

For each suite and latent setting (means over seeds, as the summaries show them):
1. `gradient` keeps at least `keep` (95 %) of the dense metric at every level up to `up_to` (0.5);
2. `gradient` is at or above every baseline (of those the suite ran) at every level;
3. at the headline level (0.2), with the latent prunable, `gradient` clearly beats `tp-magnitude`: the two
   means are further apart than twice the sum of their standard deviations over seeds;
4. the mean search time of `gradient` is at most `time_ratio` (1/5) of `grid`'s.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report.tables import mean_std
from benchmarks.sweep.store import ResultsFolder

BASELINES = ("torch-random", "torch-l2", "tp-random", "tp-magnitude")


def _means(rows: list[dict[str, Any]], method: str, latent: bool) -> dict[float, tuple[float, float, int]]:
    """{level: (mean, std over seeds, seeds)} of `method` in one latent setting."""
    levels: dict[float, list[float]] = {}
    for r in rows:
        if r["method"] == method and r["latent_prunable"] == latent:
            levels.setdefault(r["target_sparsity"], []).append(r["metric"])
    return {level: (*mean_std(values), len(values)) for level, values in sorted(levels.items())}


def _complete(means: dict[float, tuple[float, float, int]], seeds: int, levels: int = 9) -> bool:
    return len(means) == levels and all(m[2] == seeds for m in means.values())


def _verdict(ok: bool, complete: bool, measured: bool = True) -> str:
    if not measured:
        return "not measured yet"
    return ("met" if ok else "**missed**") + ("" if complete else " (incomplete: cells missing)")


def judge(rows: list[dict[str, Any]], keep: float = 0.95, up_to: float = 0.5, headline: float = 0.2,
          time_ratio: float = 0.2) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows for one suite's metrics."""
    dense = mean_std([r["metric"] for r in rows if r["method"] == "dense"])[0]
    seeds = len({r["seed"] for r in rows})
    out = []
    for latent in (True, False):
        setting = "latent prunable" if latent else "latent kept"
        gradient = _means(rows, "gradient", latent)
        low = {lv: m for lv, m in gradient.items() if lv <= up_to + 1e-9}
        worst = min(low, key=lambda lv: low[lv][0], default=None)
        measured = ", ".join(f"{lv:g}: {100 * m[0] / dense:.1f} %" for lv, m in low.items())
        ok = all(m[0] >= keep * dense for m in low.values())
        complete = len(low) == round(up_to * 10) and all(m[2] == seeds for m in low.values())
        out.append((f"gradient ≥ {keep:.0%} of dense ({dense:.1f}) up to ρ {up_to:g}, {setting}",
                    measured + (f" (lowest at ρ {worst:g})" if worst is not None else ""), _verdict(ok, complete, low != {})))
        below, complete = [], _complete(gradient, seeds)
        for method in BASELINES:
            baseline = _means(rows, method, latent)
            complete = complete and (not baseline or _complete(baseline, seeds))  # absent: not in the suite
            for level, (mean, _, _) in baseline.items():
                if level in gradient and gradient[level][0] < mean:
                    below.append(f"{method} at ρ {level:g} ({mean:.1f} > {gradient[level][0]:.1f})")
        out.append((f"gradient ≥ every baseline at every level, {setting}", "; ".join(below) or "never below",
                    _verdict(not below, complete, gradient != {})))
    grad, tpm = _means(rows, "gradient", True).get(headline), _means(rows, "tp-magnitude", True).get(headline)
    if grad and tpm:
        gap, margin = grad[0] - tpm[0], 2 * (grad[1] + tpm[1])
        out.append((f"gradient clearly beats tp-magnitude at ρ {headline:g}, latent prunable",
                    f"{grad[0]:.1f} ± {grad[1]:.1f} vs {tpm[0]:.1f} ± {tpm[1]:.1f} (gap {gap:.1f}, 2 × summed std {margin:.1f})",
                    _verdict(gap > margin, grad[2] == tpm[2] == seeds)))
    for latent in (True, False):
        times = {m: mean_std([r["search_seconds"] for r in rows if r["method"] == m and r["latent_prunable"] == latent])
                 for m in ("gradient", "grid")}
        if times["gradient"][0] == times["gradient"][0] and times["grid"][0] == times["grid"][0]:
            ratio = times["gradient"][0] / times["grid"][0]
            out.append((f"gradient search time ≤ {time_ratio:g} × grid's, {'latent prunable' if latent else 'latent kept'}",
                        f"{times['gradient'][0]:.1f} s vs {times['grid'][0]:.1f} s (ratio {ratio:.2f})",
                        _verdict(ratio <= time_ratio, True)))
    return out


def targets_markdown(result_dirs: list[Path]) -> str:
    """One table per suite: each target, what was measured and the verdict."""
    parts = ["# TD-MPC pruning targets", "", "Judged from each suite's `metrics.csv` by `ctrlprune targets` "
             "(means over seeds; a target on cells not yet computed says so).", ""]
    for result_dir in result_dirs:
        rows = ResultsFolder(result_dir).rows()
        parts += [f"## {result_dir.name}", "", "| target | measured | verdict |", "|---|---|---|"]
        parts += [f"| {t} | {m} | {v} |" for t, m, v in judge(rows)] + [""]
    return "\n".join(parts)
