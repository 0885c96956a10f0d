"""Markdown tables of metrics.csv rows: mean ± std per method series x target sparsity."""
from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from benchmarks.sweep.store import DENSE
from pruning.registry import display_order


def series_name(row: dict[str, Any]) -> str:
    """Method label, marking the runs that kept the latent width and the fine-tuned ones (with their steps)."""
    if row["method"] == DENSE:
        return DENSE
    steps = row.get("finetune_steps", 0)
    return (row["method"] + ("" if row["latent_prunable"] else " (latent kept)")
            + (f" ft{steps}" if steps == steps and steps else ""))


def method_order() -> tuple[str, ...]:
    """Order of methods in tables and legends: dense, then the registered methods in registration order."""
    return (DENSE, *display_order())


METHOD_ORDER = method_order()
"""`method_order()` of the methods registered when this module was imported."""


def series_rank(row: dict[str, Any], seen: dict[str, int]) -> tuple[int, bool]:
    """Sort key of a row's series: its method in `method_order()` (methods not registered follow in the order
    they first appear, counted in `seen`), the latent-prunable series before the latent-kept one."""
    method, order = row["method"], method_order()
    rank = order.index(method) if method in order else len(order) + seen.setdefault(method, len(seen))
    return rank, not row["latent_prunable"]


def group_rows(rows: list[dict[str, Any]]) -> dict[str, dict[float, list[dict[str, Any]]]]:
    """{series: {target sparsity: [rows over seeds]}}: methods in `method_order()`, the latent-prunable series
    of a method before its latent-kept one."""
    grouped: dict[str, dict[float, list]] = defaultdict(lambda: defaultdict(list))
    seen: dict[str, int] = {}
    for row in sorted(rows, key=lambda r: series_rank(r, seen)):
        grouped[series_name(row)][row["target_sparsity"]].append(row)
    return grouped


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def cell_text(cell_rows: list[dict[str, Any]], key: str, digits: int, seeds: int) -> str:
    """Mean ± std over the seeds of a cell; one seed shows its value alone, and a cell of several seeds but
    fewer than the table's fullest cell says how many it has."""
    mean, std = mean_std([r[key] for r in cell_rows])
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if len(cell_rows) > 1 else "")
    if 1 < len(cell_rows) < seeds:
        text += f" (n={len(cell_rows)})"
    missed = sum(not r["in_band"] for r in cell_rows)
    return text + (f" ({missed}/{len(cell_rows)} out of band)" if missed else "")


def markdown_table(rows: list[dict[str, Any]], key: str, digits: int = 2, bold_best: bool = False) -> str:
    """A markdown table of `key` (mean ± std over seeds), one line per method, one column per level.
    `bold_best` bolds the highest mean of each column within each latent setting."""
    grouped = {s: by_level for s, by_level in group_rows(rows).items() if s != DENSE}
    levels = sorted({r["target_sparsity"] for r in rows if r["method"] != DENSE})
    seeds = max((len(rs) for by_level in grouped.values() for rs in by_level.values()), default=0)
    best = _best_means(grouped, key) if bold_best else {}
    lines = ["| method | " + " | ".join(f"ρ={lv:g}" for lv in levels) + " |", "|---" * (len(levels) + 1) + "|"]
    for series, by_level in grouped.items():
        cells = []
        for lv in levels:
            if lv not in by_level:
                cells.append("–")
                continue
            text = cell_text(by_level[lv], key, digits, seeds)
            latent = by_level[lv][0]["latent_prunable"]
            cells.append(f"**{text}**" if best.get((latent, lv)) == mean_std([r[key] for r in by_level[lv]])[0] else text)
        lines.append(f"| {series} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _best_means(grouped: dict[str, dict[float, list[dict[str, Any]]]], key: str) -> dict[tuple[bool, float], float]:
    """The highest mean of `key` per (latent setting, level)."""
    best: dict[tuple[bool, float], float] = {}
    for by_level in grouped.values():
        for lv, cell_rows in by_level.items():
            mean, _ = mean_std([r[key] for r in cell_rows])
            slot = (cell_rows[0]["latent_prunable"], lv)
            if mean == mean and mean > best.get(slot, float("-inf")):
                best[slot] = mean
    return best


def search_table(rows: list[dict[str, Any]]) -> str:
    """Per method over all levels and seeds: mean search wall time, task-metric evaluations and whole-cell
    wall time, and how many cells are in band."""
    lines = ["| method | search seconds (mean per cell) | evaluations (mean per cell) | cell seconds (mean per cell) "
             "| cells in band |", "|---|---|---|---|---|"]
    for series, by_level in group_rows(rows).items():
        if series == DENSE:
            continue
        flat = [r for rs in by_level.values() for r in rs]
        secs, _ = mean_std([r["search_seconds"] for r in flat])
        evals, _ = mean_std([r["evaluations"] for r in flat])
        cell, _ = mean_std([r.get("cell_seconds", float("nan")) for r in flat])
        inband = sum(r["in_band"] for r in flat)
        lines.append(f"| {series} | {secs:.2f} | {evals:.0f} | {'–' if cell != cell else f'{cell:.1f}'} | {inband}/{len(flat)} |")
    return "\n".join(lines)
