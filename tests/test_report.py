"""`ctrlprune bench --verbose/--quiet` and `ctrlprune report`: rows as they finish, one page with tables and figures."""
import json
import re

from benchmarks.cli import _recorded_command, main
from benchmarks.report.summary import reproduce_line, summary_markdown, whole_suite_command
from test_extensibility import pendulum  # noqa: F401  (fixture)

SUITE = 'name = "tiny"\nmodel = "pendulum-mlp"\nmethods = ["tp-magnitude", "torch-l2"]\nsparsities = [0.3]\nseeds = [0]\n'


def test_verbose_quiet_and_report(tmp_path, capsys, pendulum) -> None:
    toml = tmp_path / "tiny.toml"
    toml.write_text(SUITE)
    assert main(["bench", "--suite", str(toml), "--out", str(tmp_path), "--verbose"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"^(dense|tp-magnitude|torch-l2) rho=\S+ seed=0: model=", line)]
    assert len(rows) == 3 and all("metric=" in r and "achieved_sparsity=" in r for r in rows), out

    assert main(["bench", "--suite", str(toml), "--out", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().out == ""

    result = tmp_path / "tiny"
    assert main(["report", str(result), "--html"]) == 0
    page = (result / "report.md").read_text()
    assert "| tp-magnitude |" in page and "| torch-l2 |" in page and "## return" in page
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert "plots/metric_vs_sparsity.png" in links and all((result / link).is_file() for link in links)
    html = (result / "report.html").read_text()
    assert "<table>" in html and '<img alt="metric_vs_sparsity" src="plots/metric_vs_sparsity.png"' in html


def test_reproduce_line_names_the_suite_file_given_as_a_path(tmp_path, pendulum) -> None:
    toml = tmp_path / "my suite.toml"
    toml.write_text(SUITE)
    out = tmp_path / "out"
    assert main(["--plugin", "examples.pendulum_mlp", "bench", "--suite", str(toml), "--out", str(out), "--quiet",
                 "--methods", "tp-magnitude"]) == 0
    command = f"ctrlprune --plugin examples.pendulum_mlp bench --suite '{toml}' --methods tp-magnitude --out {out}"
    run = json.loads((out / "tiny" / "run.json").read_text())
    assert run["command"] == command and isinstance(run["native_bf16"], bool) and run["cpu_capability"]
    cell = json.loads(next((out / "tiny" / "cells").glob("*tp-magnitude*.json")).read_text())
    assert cell["extra"]["machine"] == {k: run[k] for k in ("torch", "machine", "cpus", "cpu_capability", "native_bf16")}
    assert main(["report", str(out / "tiny")]) == 0
    whole = f"ctrlprune --plugin examples.pendulum_mlp bench --suite '{toml}' --out {out}"
    page = (out / "tiny" / "report.md").read_text()
    assert f"Reproduce: `{whole}` computes every cell" in page and f"The last run computed a subset: `{command}`" in page


def test_reproduce_line_of_a_whole_suite_run_is_its_command() -> None:
    assert reproduce_line("ctrlprune bench --suite ae --fresh") == "Reproduce: `ctrlprune bench --suite ae --fresh`"
    assert whole_suite_command("ctrlprune bench --suite ae --workers 2 --seeds=0,1 --methods grid --quiet") == (
        "ctrlprune bench --suite ae")


def test_reproduce_line_of_runs_without_a_recorded_command(tmp_path) -> None:
    for name, expected in (("ae", "Reproduce: `ctrlprune bench --suite ae`"), ("mine", "no command recorded")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps({"suite": {"name": name}}))
        assert expected in reproduce_line(_recorded_command(tmp_path / name))


def row(method: str, level: float, seed: int = 0, **extra) -> dict:
    """A metrics.csv row of a TD-MPC-like cell."""
    return {"model": "m", "method": method, "latent_prunable": True, "target_sparsity": level, "seed": seed,
            "achieved_sparsity": level, "in_band": True, "metric_name": "return", "metric": 800.0,
            "metric_std": 0.0, "params": 10, "macs": 10, "latent_cka": 1.0, "rollout_error": 0.0,
            "latency_ms_b1": 0.0, "search_seconds": 0.1, "evaluations": 0, **extra}


def test_summary_shows_episode_spread_and_rollout_error_only_when_measured() -> None:
    plain = summary_markdown([row("dense", 0.0), row("tp-magnitude", 0.5)], "t", "")
    assert "spread over evaluation episodes" not in plain and "rollout" not in plain
    episodic = summary_markdown([row("dense", 0.0), row("tp-magnitude", 0.5, metric_std=12.5, rollout_error=0.25)], "t", "")
    spread = episodic[episodic.index("spread over evaluation episodes"):]
    assert "| tp-magnitude | 12.50 |" in spread and "| tp-magnitude | 0.250 |" in episodic
    assert episodic.index("spread over evaluation episodes") < episodic.index("## Search cost")


def test_return_band_pools_episodes_of_all_seeds() -> None:
    from benchmarks.report.plots import _pooled, episodic

    rows = [{"method": "gradient", "metric": m, "metric_std": s} for m, s in ((10.0, 3.0), (20.0, 3.0))]
    mean, std = _pooled(rows)
    assert mean == 15.0 and abs(std - (9 + 25) ** 0.5) < 1e-9
    assert episodic(rows) and not episodic([{**r, "metric_std": 0.0} for r in rows])


def test_summary_cells_say_how_many_seeds_they_average() -> None:
    rows = [row("dense", 0.0)] + [row("gradient", 0.5, s, metric=800.0 + 10 * s) for s in range(3)]
    rows += [row("grid", 0.5, 0, metric=700.0), row("tp-random", 0.5, 0, metric=50.0), row("tp-random", 0.5, 1, metric=60.0)]
    page = summary_markdown(rows, "t", "")
    assert "| gradient | 810.00 ± 8.16 |" in page and "| grid | 700.00 |" in page and "| tp-random | 55.00 ± 5.00 (n=2) |" in page
    assert "Dense model: return 800.00, 10 parameters" in page


def test_summary_sums_the_recorded_cell_times() -> None:
    rows = [row("dense", 0.0, cell_seconds=10.0), row("gradient", 0.5, cell_seconds=3590.0),
            row("grid", 0.5, cell_seconds=float("nan"))]
    page = summary_markdown(rows, "t", "")
    assert "Compute: 1.00 h of cell wall time over 2 cells (1 cell stored before" in page
    assert "| gradient | 0.10 | 0 | 3590.0 | 1/1 |" in page and "| grid | 0.10 | 0 | – | 1/1 |" in page
    assert "Compute:" not in summary_markdown([row("dense", 0.0), row("grid", 0.5)], "t", "")


def test_table_command_orders_methods_and_bolds_the_best_per_latent_setting(tmp_path, capsys) -> None:
    from benchmarks.sweep.store import COLUMNS

    rows = [row("dense", 0.0), row("gradient", 0.5, metric=850.0), row("gradient", 0.5, latent_prunable=False, metric=820.0),
            row("tp-magnitude", 0.5, metric=170.0), row("tp-magnitude", 0.5, latent_prunable=False, metric=830.0),
            row("tp-magnitude", 0.5, seed=1, metric=190.0)]
    lines = [",".join(COLUMNS)] + [",".join(str(r.get(c, "")) for c in COLUMNS) for r in rows]
    (tmp_path / "metrics.csv").write_text("\n".join(lines) + "\n")
    assert main(["table", str(tmp_path), "--seeds", "0", "--digits", "1", "--bold-best"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2:] == ["| tp-magnitude | 170.0 |", "| tp-magnitude (latent kept) | **830.0** |",
                         "| gradient | **850.0** |", "| gradient (latent kept) | 820.0 |"]
    assert main(["table", str(tmp_path), "--key", "nope"]) == 2 and "unknown column 'nope'" in capsys.readouterr().err


def test_winning_starts_count_only_current_cells(tmp_path) -> None:
    from benchmarks.report.summary import winning_starts

    cells = tmp_path / "cells"
    cells.mkdir()
    current, stale = row("gradient", 0.5, metric=850.0), row("gradient", 0.5, metric=700.0)
    for name, cell_row, start in (("a", current, "greedy"), ("b", stale, "uniform"), ("c", row("grid", 0.5), "")):
        blob = {"row": cell_row, "extra": {"search": {"best_start": start} if start else {}}}
        (cells / f"{name}.json").write_text(json.dumps(blob))
    table = winning_starts(tmp_path, [current, row("grid", 0.5)])
    assert "| gradient | greedy 1 |" in table and "uniform" not in table and "grid" not in table
    assert winning_starts(tmp_path, [row("grid", 0.5)]) == ""
    assert "## Winning start" in summary_markdown([row("dense", 0.0), current], "t", "", table)


def test_final_selections_compare_the_surrogates_pick_with_the_chosen_solution(tmp_path) -> None:
    from benchmarks.report.summary import final_selections

    cells = tmp_path / "cells"
    cells.mkdir()
    changed, kept = row("gradient", 0.5, metric=840.0), row("gradient", 0.6, metric=40.0)
    selections = {"a": (changed, [[0.3, 800.0, {"pi.0": 18}, "search"], [0.5, 880.0, {"pi.0": 36}, "widened pi.0"]]),
                  "b": (kept, [[0.2, 50.0, {"pi.0": 9}], [0.4, 30.0, {"pi.0": 7}]])}
    for name, (cell_row, candidates) in selections.items():
        (cells / f"{name}.json").write_text(json.dumps({"row": cell_row, "extra": {"search": {"final_selection": candidates}}}))
    table = final_selections(tmp_path, [changed, kept])
    assert "| gradient | 0.5 | 1 | 1 | 1 | 800.0 | 880.0 | 840.0 |" in table
    assert "| gradient | 0.6 | 1 | 0 | 0 | 50.0 | 50.0 | 40.0 |" in table  # an older cell: no origin
    assert final_selections(tmp_path, [row("grid", 0.5)]) == ""
    page = summary_markdown([row("dense", 0.0), changed], "t", "", selections=table)
    assert "## Final selection" in page
