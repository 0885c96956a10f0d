"""The same suite and seeds give the same metrics.csv, timing columns aside.

The suite uses the small Pendulum MLP example so that every method with randomness or a search (seeded
random channel choice, random masks, the grid, the gradient search) runs at two levels in seconds; the
autoencoder's cross-process determinism is covered by the kill-and-resume test.
"""
import tomllib
from pathlib import Path

from benchmarks.sweep.runner import run_suite
from benchmarks.sweep.store import TIMING_COLUMNS, read_csv
from benchmarks.sweep.suite import load_suite
from benchmarks.usecases import list_usecases
from pruning import list_methods
from test_extensibility import pendulum  # noqa: F401  (fixture)

SUITE = """
name = "determinism"
model = "pendulum-mlp"
methods = ["tp-random", "torch-random", "grid", "gradient"]
sparsities = [0.2, 0.5]
seeds = [0]
[method_options]
gradient = {steps = 20}
grid = {budget = 4}
"""


def _without_timing(path: Path) -> list[dict[str, str]]:
    return [{k: str(v) for k, v in row.items() if k not in TIMING_COLUMNS} for row in read_csv(path)]


def test_two_runs_give_identical_metrics(tmp_path, pendulum) -> None:
    toml = tmp_path / "determinism.toml"
    toml.write_text(SUITE)
    suite = load_suite(str(toml), list_usecases(), list_methods())
    assert suite.method_options == tomllib.loads(SUITE)["method_options"]
    first, second = (run_suite(suite, root=tmp_path / run, quiet=True).root / "metrics.csv" for run in ("a", "b"))
    rows = _without_timing(first)
    assert len(rows) == 1 + 4 * 2 and {r["method"] for r in rows} == {"dense", *suite.methods}
    assert rows == _without_timing(second)
    assert len({r["widths"] for r in rows if r["method"] != "dense"}) > 1  # the runs did prune, differently per cell
