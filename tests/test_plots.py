"""Figures from metrics.csv rows: one return panel per latent setting, one colour per method everywhere."""
import matplotlib.pyplot as plt

from benchmarks.report.plots import make_plots, metric_figure
from benchmarks.sweep.store import COLUMNS
from test_report import row


def _lines(ax) -> dict[str, tuple]:
    return {line.get_label(): (line.get_color(), line.get_linestyle()) for line in ax.get_lines()}


def test_one_panel_per_latent_setting_with_shared_method_colours() -> None:
    rows = [row("dense", 0.0)] + [row(m, lv, latent_prunable=lat) for m in ("gradient", "tp-magnitude")
                                  for lat in (True, False) for lv in (0.2, 0.5)]
    fig = metric_figure(rows)
    prunable, kept = fig.axes
    assert (prunable.get_title(), kept.get_title()) == ("latent width prunable", "latent width kept")
    left, right = _lines(prunable), _lines(kept)
    assert set(left) == {"gradient", "tp-magnitude", "dense"}
    assert set(right) == {"gradient (latent kept)", "tp-magnitude (latent kept)", "dense"}
    assert left["gradient"][0] == right["gradient (latent kept)"][0] != left["tp-magnitude"][0]
    assert (left["gradient"][1], right["gradient (latent kept)"][1]) == ("-", "--")
    plt.close(fig)

    single = metric_figure([r for r in rows if r["latent_prunable"]])
    assert len(single.axes) == 1 and set(_lines(single.axes[0])) == {"gradient", "tp-magnitude", "dense"}
    plt.close(single)


def test_make_plots_writes_every_figure_from_metrics_csv(tmp_path) -> None:
    rows = [row("dense", 0.0, latency_ms_b256=1.0), row("gradient", 0.5, latent_prunable=False, latency_ms_b256=0.5)]
    lines = [",".join(COLUMNS)] + [",".join(str(r.get(c, "")) for c in COLUMNS) for r in rows]
    (tmp_path / "metrics.csv").write_text("\n".join(lines) + "\n")
    names = {p.name for p in make_plots(tmp_path)}
    assert names == {"metric_vs_sparsity.png", "latent_stability.png", "search_time.png", "latency_vs_macs.png"}
    assert all((tmp_path / "plots" / n).stat().st_size > 10_000 for n in names)
