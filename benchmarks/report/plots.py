"""Figures of a suite, regenerated from `metrics.csv` (and, for reconstruction grids, the stored cells).

- `metric_vs_sparsity.png`: the task metric against target sparsity per method, mean with a ±std band
  (over seeds; over all evaluation episodes when cells record their episode spread, as TD-MPC's do), one
  panel per latent setting (prunable, kept); each method has one colour in every figure;
- `latent_stability.png`: latent cosine and CKA (and the multi-step rollout error, when measured) against
  sparsity;
- `search_time.png`: mean search wall time per method (log scale);
- `latency_vs_macs.png`: CPU latency at batch 1 and 256 against MACs;
- `finetune_vs_sparsity.png` and `recovery_curves.png` when cells were fine-tuned (`benchmarks.report.finetune`);
- the figures of the suite's use case (`UseCase.figures`), e.g. the autoencoder's `reconstructions.png`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.report.tables import group_rows, mean_std, series_name  # noqa: E402
from benchmarks.sweep.store import DENSE, ResultsFolder  # noqa: E402
from benchmarks.usecases.base import usecase_type  # noqa: E402


def episodic(rows: list[dict[str, Any]]) -> bool:
    """True when cells carry a spread over evaluation episodes (`metric_std`), as TD-MPC's do."""
    return any(r.get("metric_std", 0) for r in rows if r["method"] != DENSE)


def _pooled(cell_rows: list[dict[str, Any]]) -> tuple[float, float]:
    """Mean and std of all evaluation episodes of a cell's seeds (equal episodes per seed)."""
    mean, between = mean_std([r["metric"] for r in cell_rows])
    within = float(np.mean([r.get("metric_std", 0.0) ** 2 for r in cell_rows]))
    return mean, float(np.sqrt(within + between ** 2))


def _series_curves(rows: list[dict[str, Any]], key: str,
                   pooled: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    curves = {}
    for series, by_level in group_rows(rows).items():
        if series == DENSE:
            continue
        levels = sorted(by_level)
        stats = [(_pooled if pooled else lambda rs: mean_std([r[key] for r in rs]))(by_level[lv]) for lv in levels]
        curves[series] = (np.array(levels), np.array([s[0] for s in stats]), np.array([s[1] for s in stats]))
    return curves


def _style(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Line style per series: one colour per method (the same in every panel and figure), solid with the
    latent width prunable and dashed with it kept."""
    ordered = [r for by_level in group_rows(rows).values() for cell_rows in by_level.values() for r in cell_rows]
    methods = list(dict.fromkeys(r["method"] for r in ordered if r["method"] != DENSE))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    return {series_name(r): {"color": colours[r["method"]], "ls": "-" if r["latent_prunable"] else "--"}
            for r in rows if r["method"] != DENSE}


def _plot_curves(ax: plt.Axes, rows: list[dict[str, Any]], key: str, pooled: bool = False,
                 style: dict[str, dict[str, Any]] | None = None) -> None:
    style = style or _style(rows)
    for series, (x, mean, std) in _series_curves(rows, key, pooled).items():
        ax.plot(x, mean, marker="o", ms=3, label=series, **style[series])
        ax.fill_between(x, mean - std, mean + std, alpha=0.15, color=style[series]["color"])
    dense = [r[key] for r in rows if r["method"] == DENSE]
    if dense and key == "metric":
        ax.axhline(mean_std(dense)[0], color="k", ls=":", lw=1, label="dense")
    ax.set_xlabel("target sparsity ρ*")
    ax.grid(alpha=0.3)


def plot_metric(rows: list[dict[str, Any]], out: Path) -> Path:
    return save_figure(metric_figure(rows), out / "metric_vs_sparsity.png")


def metric_figure(rows: list[dict[str, Any]]) -> plt.Figure:
    """The task metric against sparsity: one panel per latent setting present (prunable, kept), each method
    in the same colour in both."""
    pruned = [r for r in rows if r["method"] != DENSE]
    settings = [lat for lat in (True, False) if any(r["latent_prunable"] == lat for r in pruned)] or [True]
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings) + 1, 4.8), sharey=True, squeeze=False)
    pooled, style = episodic(rows), _style(rows)
    for ax, latent in zip(axes[0], settings):
        panel = [r for r in rows if r["method"] == DENSE or r["latent_prunable"] == latent]
        _plot_curves(ax, panel, "metric", pooled, style)
        if len(settings) > 1:
            ax.set_title("latent width prunable" if latent else "latent width kept", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel(rows[0]["metric_name"])
    spread = "all evaluation episodes" if pooled else "seeds"
    fig.suptitle(f"{rows[0]['model']}: {rows[0]['metric_name']} vs sparsity (mean ± std over {spread})", fontsize=10)
    return fig


def plot_stability(rows: list[dict[str, Any]], out: Path) -> Path:
    keys = ["latent_cosine", "latent_cka"]
    if any(r.get("rollout_error", 0) for r in rows):
        keys.append("rollout_error")
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4))
    for ax, key in zip(axes, keys):
        _plot_curves(ax, rows, key)
        ax.set_ylabel(key.replace("_", " "))
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"{rows[0]['model']}: latent stability against the dense model")
    return save_figure(fig, out / "latent_stability.png")


def plot_search_time(rows: list[dict[str, Any]], out: Path) -> Path:
    series = [(s, mean_std([r["search_seconds"] for rs in lv.values() for r in rs])[0])
              for s, lv in group_rows(rows).items() if s != DENSE]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar([s for s, _ in series], [max(t, 1e-3) for _, t in series])
    ax.set_yscale("log")
    ax.set_ylabel("search wall time per cell [s]")
    ax.tick_params(axis="x", rotation=30)
    ax.set_title(f"{rows[0]['model']}: search time per method")
    return save_figure(fig, out / "search_time.png")


def plot_latency(rows: list[dict[str, Any]], out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    style = {**_style(rows), "dense": {"color": "k", "ls": "-"}}
    for ax, key in zip(axes, ("latency_ms_b1", "latency_ms_b256")):
        for series, by_level in group_rows(rows).items():
            flat = [r for rs in by_level.values() for r in rs]
            marker = "o" if style[series]["ls"] == "-" else "x"
            ax.scatter([r["macs"] for r in flat], [r[key] for r in flat], s=12, label=series,
                       color=style[series]["color"], marker=marker)
        ax.set_xlabel("MACs (batch 1)")
        ax.set_ylabel(f"CPU latency [ms], {key.split('_')[-1]}")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{rows[0]['model']}: latency against MACs")
    return save_figure(fig, out / "latency_vs_macs.png")


def image_grid(rows: dict[str, list], shape: tuple[int, int], title: str, path: Path) -> Path:
    """One row of grey-scale images (bytes, flattened `shape`) per entry of `rows`, named on its left."""
    names = list(rows)
    columns = len(rows[names[0]])
    fig, axes = plt.subplots(len(names), columns, figsize=(columns * 0.9, len(names) * 1.0), squeeze=False)
    for r, name in enumerate(names):
        images = np.array(rows[name], dtype=np.float32)
        for c in range(columns):
            axes[r, c].imshow(images[c].reshape(shape), cmap="gray", vmin=0, vmax=255)
            axes[r, c].axis("off")
        axes[r, 0].set_title(name, fontsize=7, loc="left")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def save_figure(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def make_plots(result_dir: str | Path) -> list[Path]:
    """Every figure of a suite's results folder; returns the files written."""
    result_dir = Path(result_dir)
    folder = ResultsFolder(result_dir)
    rows = folder.rows()
    if not rows:
        raise ValueError(f"{folder.csv_path} has no rows yet")
    out = result_dir / "plots"
    out.mkdir(exist_ok=True)
    from benchmarks.report.finetune import finetune_figures

    paths = [plot_metric(rows, out), plot_stability(rows, out), plot_search_time(rows, out), plot_latency(rows, out)]
    return paths + finetune_figures(rows, out) + usecase_type(rows[0]["model"]).figures(folder, out)
