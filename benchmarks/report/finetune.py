"""Report of fine-tuned cells: the metric before and after fine-tuning, and the recovery curves.

- `finetune_vs_sparsity.png`: per method, the metric after fine-tuning (solid) and before it (dotted) against
  target sparsity, mean ± std over seeds, with the dense model before and after the same fine-tuning;
- `recovery_curves.png`: one panel per target sparsity, the metric against fine-tuning steps per method
  (mean over seeds of the points each row's `finetune_curve` holds);
- `finetune_table`: markdown "before → after" per method and level;
- `recovery_table`: markdown, the mean recovery curve of each method and level as numbers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np

from benchmarks.report.plots import save_figure
from benchmarks.report.tables import group_rows, mean_std
from benchmarks.sweep.store import DENSE


def finetuned_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of fine-tuned cells (`finetune_steps` > 0)."""
    return [r for r in rows if (steps := r.get("finetune_steps", 0)) == steps and steps]


def parse_curve(text: str) -> list[tuple[int, float]]:
    """A row's `finetune_curve` "step:metric;..." as (step, metric) pairs."""
    return [(int(step), float(value)) for step, value in (point.split(":") for point in text.split(";") if point)]


def mean_curve(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Steps and mean metric over `rows` at every step all their curves share."""
    curves = [dict(parse_curve(r["finetune_curve"])) for r in rows]
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    return np.array(steps), np.array([np.mean([c[s] for c in curves]) for s in steps])


def _methods(rows: list[dict[str, Any]]) -> dict[str, dict[float, list[dict[str, Any]]]]:
    return {series: by_level for series, by_level in group_rows(rows).items() if series != DENSE}


def finetune_figures(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """The two figures of the fine-tuned rows under `out`; none when no row was fine-tuned."""
    rows = finetuned_rows(rows)
    if not rows:
        return []
    return [save_figure(_before_after(rows), out / "finetune_vs_sparsity.png"),
            save_figure(_recovery(rows), out / "recovery_curves.png")]


def _colours(series: list[str]) -> dict[str, Any]:
    return {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(series)}


def _before_after(rows: list[dict[str, Any]]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8.6, 4.8))
    grouped = _methods(rows)
    colours = _colours(list(grouped))
    for series, by_level in grouped.items():
        levels = sorted(by_level)
        for key, style, label in (("metric", "-", series), ("metric_before", ":", None)):
            stats = [mean_std([r[key] for r in by_level[lv]]) for lv in levels]
            mean, std = np.array([s[0] for s in stats]), np.array([s[1] for s in stats])
            ax.plot(levels, mean, ls=style, marker="o", ms=3, color=colours[series], label=label)
            if key == "metric":
                ax.fill_between(levels, mean - std, mean + std, alpha=0.15, color=colours[series])
    dense = [r for r in rows if r["method"] == DENSE]
    if dense:
        ax.axhline(mean_std([r["metric"] for r in dense])[0], color="k", ls="-", lw=1, label="dense, fine-tuned alike")
        ax.axhline(mean_std([r["metric_before"] for r in dense])[0], color="k", ls=":", lw=1, label="dense")
    steps = rows[0]["finetune_steps"]
    ax.set_xlabel("target sparsity ρ*")
    ax.set_ylabel(rows[0]["metric_name"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{rows[0]['model']}: {rows[0]['metric_name']} after {steps} fine-tuning steps\n"
                 "(solid, mean ± std over seeds) and before (dotted)", fontsize=9)
    return fig


def _recovery(rows: list[dict[str, Any]]) -> plt.Figure:
    grouped = _methods(rows)
    levels = sorted({lv for by_level in grouped.values() for lv in by_level})
    columns = min(len(levels), 4)
    lines = -(-len(levels) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(3.6 * columns + 1, 3.2 * lines), sharey=True, squeeze=False)
    colours = _colours(list(grouped))
    dense = [r for r in rows if r["method"] == DENSE]
    for ax, level in zip(axes.flat, levels):
        for series, by_level in grouped.items():
            if level in by_level:
                steps, mean = mean_curve(by_level[level])
                ax.plot(steps, mean, marker="o", ms=3, color=colours[series], label=series)
        if dense:
            steps, mean = mean_curve(dense)
            ax.plot(steps, mean, color="k", ls=":", lw=1, label="dense")
        ax.set_title(f"ρ* = {level:g}", fontsize=9)
        ax.set_xlabel("fine-tuning steps")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(levels):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel(rows[0]["metric_name"])
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{rows[0]['model']}: recovery during fine-tuning (mean over seeds)", fontsize=10)
    return fig


def finetune_line(rows: list[dict[str, Any]]) -> str:
    """How long the rows were fine-tuned and what that cost, e.g. "fine-tuned 500 steps, 12.3 s per cell"."""
    rows = finetuned_rows(rows)
    steps = sorted({r["finetune_steps"] for r in rows})
    seconds, _ = mean_std([r.get("finetune_seconds", float("nan")) for r in rows])
    return (f"fine-tuned {', '.join(map(str, steps))} steps, {seconds:.1f} s of fine-tuning and its evaluations per "
            "cell on average")


def finetune_table(rows: list[dict[str, Any]], digits: int = 2) -> str:
    """Markdown: per method (rows) and level (columns), the mean metric before → after fine-tuning; empty when
    no row was fine-tuned."""
    rows = finetuned_rows(rows)
    if not rows:
        return ""
    seeds = max(len(rs) for by_level in _methods(rows).values() for rs in by_level.values())
    return _level_table(rows, lambda cell: _before_after_text(cell, digits, seeds))


def recovery_table(rows: list[dict[str, Any]], digits: int = 1) -> str:
    """Markdown: per method (rows) and level (columns), the mean metric over seeds at each point of the
    recovery curve, "before → ... → after"; empty when no row was fine-tuned."""
    rows = finetuned_rows(rows)
    return _level_table(rows, lambda cell: _curve_text(cell, digits)) if rows else ""


def _level_table(rows: list[dict[str, Any]], text: Callable[[list[dict[str, Any]]], str]) -> str:
    """Markdown: a row for the dense model (the same text under every level) and one per method, a column per
    level, each cell the `text` of its rows over the seeds ("–" where none)."""
    grouped = _methods(rows)
    levels = sorted({lv for by_level in grouped.values() for lv in by_level})
    lines = ["| method | " + " | ".join(f"ρ={lv:g}" for lv in levels) + " |", "|---" * (len(levels) + 1) + "|"]
    dense = [r for r in rows if r["method"] == DENSE]
    if dense:
        lines.append("| dense | " + " | ".join(text(dense) for _ in levels) + " |")
    for series, by_level in grouped.items():
        cells = [text(by_level[lv]) if lv in by_level else "–" for lv in levels]
        lines.append(f"| {series} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _before_after_text(rows: list[dict[str, Any]], digits: int, seeds: int) -> str:
    """Mean before → mean after over the seeds of a cell, with their count when some are missing."""
    before, after = (mean_std([r[key] for r in rows])[0] for key in ("metric_before", "metric"))
    return f"{before:.{digits}f} → {after:.{digits}f}" + (f" (n={len(rows)})" if len(rows) < seeds else "")


def recovery_heading(rows: list[dict[str, Any]]) -> str:
    """What the recovery table's columns hold: the shared curve steps, when every fine-tuned row has the same."""
    shapes = {tuple(step for step, _ in parse_curve(r["finetune_curve"])) for r in finetuned_rows(rows)}
    if len(shapes) == 1:
        return f"mean over seeds at steps {' → '.join(map(str, next(iter(shapes))))}"
    return "mean over seeds at each point of the curve"


def _curve_text(rows: list[dict[str, Any]], digits: int) -> str:
    return " → ".join(f"{value:.{digits}f}" for value in mean_curve(rows)[1])
