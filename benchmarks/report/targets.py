"""Pruning targets a use case declares (`UseCase.targets`), judged from a suite's metrics.csv alone.

For each suite and latent setting (means over seeds, as the summaries show them):
1. the `method` keeps at least `keep` of the dense metric at every level up to `up_to`;
2. the `method` is not below any baseline (mask and structural methods the suite ran) at any level by more than
   the two methods' summed standard deviations over seeds; where the baseline keeps less than `collapsed` of
   the dense metric both have collapsed and a difference is not a miss (from one seed there is no spread, and
   the verdict says so);
3. at the `headline` level, with the latent prunable, the `method` clearly beats the `rival`: the two means
   are further apart than twice the sum of their standard deviations over seeds;
4. the mean search time of the `method` is at most `time_ratio` of the `slower` search's;
5. where declared, the `method` keeps at least `floor_keep` of the dense metric at `floor_level`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report.tables import mean_std
from benchmarks.sweep.store import DENSE, ResultsFolder
from benchmarks.usecases.base import PruningTargets, usecase_type
from pruning.registry import MASK, STRUCTURAL, methods_of


def _means(rows: list[dict[str, Any]], method: str, latent: bool) -> dict[float, tuple[float, float, int]]:
    """{level: (mean, std over seeds, seeds)} of `method` in one latent setting."""
    levels: dict[float, list[float]] = {}
    for r in rows:
        if r["method"] == method and r["latent_prunable"] == latent:
            levels.setdefault(r["target_sparsity"], []).append(r["metric"])
    return {level: (*mean_std(values), len(values)) for level, values in sorted(levels.items())}


def _complete(means: dict[float, tuple[float, float, int]], seeds: int, levels: int) -> bool:
    return len(means) == levels and all(m[2] == seeds for m in means.values())


def _verdict(ok: bool, complete: bool, measured: bool = True, seeds: int = 2) -> str:
    """The verdict cell; `seeds` < 2 says that a spread over seeds, where the target uses one, is not known."""
    if not measured:
        return "not measured yet"
    return (("met" if ok else "**missed**") + ("" if complete else " (incomplete: cells missing)")
            + ("" if seeds > 1 else " (one seed: no spread over seeds, every gap counts)"))


def _baselines_row(rows: list[dict[str, Any]], targets: PruningTargets, found: dict[float, tuple[float, float, int]],
                   latent: bool, dense: float, seeds: int) -> tuple[str, str, str]:
    """Target 2: every level where `method` falls below a baseline by more than their summed std is a miss."""
    below, tolerated, complete = [], 0, _complete(found, seeds, len(targets.levels))
    for method in methods_of(MASK) + methods_of(STRUCTURAL):
        baseline = _means(rows, method, latent)
        complete = complete and (not baseline or _complete(baseline, seeds, len(targets.levels)))  # absent: not run
        for level, (mean, std, _) in baseline.items():
            if level not in found or found[level][0] >= mean:
                continue
            ours, our_std = found[level][:2]
            if mean - ours > std + our_std and mean >= targets.collapsed * dense:
                below.append(f"{method} at ρ {level:g} ({mean:.1f} ± {std:.1f} > {ours:.1f} ± {our_std:.1f})")
            else:
                tolerated += 1
    measured = "; ".join(below) or "never below"
    if tolerated:
        measured += (f" (not counted: {tolerated} deficit{'s' if tolerated > 1 else ''} within the summed std or "
                     f"against a baseline below {targets.collapsed:.0%} of dense)")
    setting = "latent prunable" if latent else "latent kept"
    return (f"{targets.method} not below any baseline by more than the summed std at any level, {setting}",
            measured, _verdict(not below, complete, found != {}, seeds))


def _floor_row(targets: PruningTargets, ours: tuple[float, float, int] | None, setting: str, dense: float,
               seeds: int) -> tuple[str, str, str]:
    """Target 5: `method` keeps `floor_keep` of the dense metric at `floor_level`."""
    target = f"{targets.method} ≥ {targets.floor_keep:.0%} of dense at ρ {targets.floor_level:g}, {setting}"
    if ours is None:
        return target, "", _verdict(False, False, measured=False)
    return (target, f"{100 * ours[0] / dense:.1f} % ({ours[0]:.1f} ± {ours[1]:.1f})",
            _verdict(ours[0] >= targets.floor_keep * dense, ours[2] == seeds))


def judge(rows: list[dict[str, Any]], targets: PruningTargets) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows for one suite's metrics."""
    dense = mean_std([r["metric"] for r in rows if r["method"] == DENSE])[0]
    seeds, name = len({r["seed"] for r in rows}), targets.method
    out = []
    for latent in (True, False):
        setting = "latent prunable" if latent else "latent kept"
        found = _means(rows, name, latent)
        low = {lv: m for lv, m in found.items() if lv <= targets.up_to + 1e-9}
        worst = min(low, key=lambda lv: low[lv][0], default=None)
        measured = ", ".join(f"{lv:g}: {100 * m[0] / dense:.1f} %" for lv, m in low.items())
        ok = all(m[0] >= targets.keep * dense for m in low.values())
        low_levels = sum(lv <= targets.up_to + 1e-9 for lv in targets.levels)
        complete = len(low) == low_levels and all(m[2] == seeds for m in low.values())
        out.append((f"{name} ≥ {targets.keep:.0%} of dense ({dense:.1f}) up to ρ {targets.up_to:g}, {setting}",
                    measured + (f" (lowest at ρ {worst:g})" if worst is not None else ""), _verdict(ok, complete, low != {})))
        out.append(_baselines_row(rows, targets, found, latent, dense, seeds))
        if targets.floor_level is not None:
            out.append(_floor_row(targets, found.get(targets.floor_level), setting, dense, seeds))
    ours, rival = _means(rows, name, True).get(targets.headline), _means(rows, targets.rival, True).get(targets.headline)
    if ours and rival:
        gap, margin = ours[0] - rival[0], 2 * (ours[1] + rival[1])
        out.append((f"{name} clearly beats {targets.rival} at ρ {targets.headline:g}, latent prunable",
                    f"{ours[0]:.1f} ± {ours[1]:.1f} vs {rival[0]:.1f} ± {rival[1]:.1f} (gap {gap:.1f}, 2 × summed std {margin:.1f})",
                    _verdict(gap > margin, ours[2] == rival[2] == seeds, seeds=seeds)))
    for latent in (True, False):
        times = {m: mean_std([r["search_seconds"] for r in rows if r["method"] == m and r["latent_prunable"] == latent])[0]
                 for m in (name, targets.slower)}
        if times[name] == times[name] and times[targets.slower] == times[targets.slower]:
            ratio = times[name] / times[targets.slower]
            out.append((f"{name} search time ≤ {targets.time_ratio:g} × {targets.slower}'s, "
                        f"{'latent prunable' if latent else 'latent kept'}",
                        f"{times[name]:.1f} s vs {times[targets.slower]:.1f} s (ratio {ratio:.2f})",
                        _verdict(ratio <= targets.time_ratio, True)))
    return out


def declared_targets(rows: list[dict[str, Any]], result_dir: Path) -> PruningTargets:
    """The targets the use case of `rows` declares; ValueError when it declares none."""
    model = rows[0]["model"] if rows else "?"
    targets = usecase_type(model).targets
    if targets is None:
        raise ValueError(f"{result_dir}: model {model!r} declares no pruning targets (UseCase.targets)")
    return targets


def targets_markdown(result_dirs: list[Path]) -> str:
    """One table per suite: each target its use case declares, what was measured and the verdict."""
    parts = ["# Pruning targets", "", "Judged from each suite's `metrics.csv` by `ctrlprune targets` against the "
             "targets its use case declares (means over seeds; a target on cells not yet computed says so).", ""]
    for result_dir in result_dirs:
        rows = ResultsFolder(result_dir).rows()
        targets = declared_targets(rows, result_dir)
        parts += [f"## {result_dir.name}", "", "| target | measured | verdict |", "|---|---|---|"]
        parts += [f"| {t} | {m} | {v} |" for t, m, v in judge(rows, targets)] + [""]
    return "\n".join(parts)
