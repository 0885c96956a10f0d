"""`ctrlprune bench --dry-run`: what a run would compute, without computing or writing anything."""
from benchmarks.cli import main
from test_extensibility import pendulum  # noqa: F401  (fixture)

SUITE = 'name = "tiny"\nmodel = "pendulum-mlp"\nmethods = ["tp-magnitude", "torch-l2"]\nsparsities = [0.3, 0.5]\nseeds = [0, 1]\n'


def test_dry_run_lists_the_missing_cells_and_writes_nothing(tmp_path, capsys, pendulum) -> None:
    toml = tmp_path / "tiny.toml"
    toml.write_text(SUITE)
    out = tmp_path / "out"
    assert main(["bench", "--suite", str(toml), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("tiny: 10 cells, 0 done, 10 to run") and "tp-magnitude, seeds 0, 1: rho 0.3, 0.5 (4 cells)" in printed
    assert not out.exists()

    assert main(["bench", "--suite", str(toml), "--out", str(out), "--quiet", "--methods", "torch-l2", "--seeds", "0"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["bench", "--suite", str(toml), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("tiny: 10 cells, 3 done, 7 to run")
    assert "torch-l2, seed 1: rho 0.3, 0.5 (2 cells)" in printed and "torch-l2, seed 0" not in printed
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert "estimated compute:" in printed and "not counted: tp-magnitude (no timed cell yet)" in printed


def test_estimate_uses_the_mean_cell_time_of_each_method_and_latent_setting() -> None:
    from benchmarks.sweep.cells import estimate_seconds
    from benchmarks.sweep.store import Cell

    done = [{"method": "grid", "latent_prunable": True, "cell_seconds": s} for s in (100.0, 300.0)]
    done += [{"method": "grid", "latent_prunable": False, "cell_seconds": 50.0},
             {"method": "gradient", "latent_prunable": True, "cell_seconds": float("nan")}]
    todo = [Cell("m", "grid", True, 0.5, 1), Cell("m", "grid", False, 0.5, 1), Cell("m", "gradient", True, 0.5, 1)]
    assert estimate_seconds(todo, done) == (250.0, ["gradient"])


def test_a_methods_subset_run_keeps_the_rows_of_methods_with_options(tmp_path, capsys, pendulum) -> None:
    from benchmarks.sweep.store import read_csv

    toml = tmp_path / "opts.toml"
    toml.write_text('name = "opts"\nmodel = "pendulum-mlp"\nmethods = ["tp-magnitude", "grid"]\nsparsities = [0.3]\n'
                    'seeds = [0]\n[method_options.grid]\nbudget = 4\n')
    out = tmp_path / "out"
    assert main(["bench", "--suite", str(toml), "--out", str(out), "--quiet"]) == 0
    assert main(["bench", "--suite", str(toml), "--out", str(out), "--quiet", "--methods", "tp-magnitude"]) == 0
    assert [r["method"] for r in read_csv(out / "opts" / "metrics.csv")] == ["dense", "tp-magnitude", "grid"]
    assert main(["bench", "--suite", str(toml), "--out", str(out), "--dry-run", "--methods", "grid"]) == 0
    assert capsys.readouterr().out.startswith("opts: 2 cells, 2 done, 0 to run")
