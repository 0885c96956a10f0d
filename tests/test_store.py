"""The results store: atomic cells, resumable, exact rows, stale cells ignored."""
import json

from benchmarks.sweep.store import Cell, ResultStore, read_csv


def _row(cell: Cell, metric: float) -> dict:
    return {"model": cell.model, "method": cell.method, "latent_prunable": cell.latent_prunable,
            "target_sparsity": cell.target_sparsity, "seed": cell.seed, "metric": metric, "in_band": True,
            "metric_name": "psnr", "params": 10, "widths": "a:1"}


CELLS = [Cell("ae", "gradient", True, s, seed) for s in (0.1, 0.2) for seed in (0, 1)]


def test_rows_follow_suite_order_without_duplicates(tmp_path) -> None:
    store = ResultStore(tmp_path, lambda c: "fp")
    for i, cell in enumerate(reversed(CELLS)):
        store.put(cell, _row(cell, float(i)))
    store.put(CELLS[0], _row(CELLS[0], 9.0))  # a rerun of one cell replaces it
    rows = read_csv(store.write_csv(CELLS))
    assert [(r["target_sparsity"], r["seed"]) for r in rows] == [(0.1, 0), (0.1, 1), (0.2, 0), (0.2, 1)]
    assert rows[0]["metric"] == 9.0 and rows[0]["in_band"] is True and rows[0]["params"] == 10


def test_missing_skips_finished_and_ignores_stale_or_torn_files(tmp_path) -> None:
    store = ResultStore(tmp_path, lambda c: "v2")
    store.put(CELLS[0], _row(CELLS[0], 1.0))
    ResultStore(tmp_path, lambda c: "v1").put(CELLS[1], _row(CELLS[1], 1.0))  # made under other settings
    store.path(CELLS[2]).write_text('{"fingerprint": "v2", "row": {')  # torn write
    assert store.missing(CELLS) == CELLS[1:]
    assert [r["seed"] for r in read_csv(store.write_csv(CELLS))] == [0]


def test_no_temporary_files_are_left(tmp_path) -> None:
    store = ResultStore(tmp_path, lambda c: "fp")
    store.put(CELLS[0], _row(CELLS[0], 1.0), extra={"x": [1, 2]})
    assert sorted(p.name for p in store.cells_dir.iterdir()) == [f"{CELLS[0].key}.json"]
    assert json.loads(store.path(CELLS[0]).read_text())["extra"] == {"x": [1, 2]}
    assert store.extra(CELLS[0]) == {"x": [1, 2]}


def test_a_subset_run_keeps_the_other_rows_of_the_suite_in_metrics_csv(tmp_path) -> None:
    store = ResultStore(tmp_path, lambda c: "fp", context="suite-v1")
    for cell in CELLS:
        store.put(cell, _row(cell, 1.0))
    other = Cell("ae", "tp-magnitude", True, 0.1, 0)
    ResultStore(tmp_path, lambda c: "fp", context="suite-v0").put(other, _row(other, 2.0))  # other shared settings
    rows = read_csv(store.write_csv(CELLS[:1]))  # e.g. `ctrlprune bench --seeds 0 --sparsities 0.1`
    assert [(r["target_sparsity"], r["seed"]) for r in rows] == [(0.1, 0), (0.1, 1), (0.2, 0), (0.2, 1)]
    assert all(r["method"] == "gradient" for r in rows)


class _VersionedUseCase:
    """Just what the fingerprinter reads from a use case."""

    checkpoint = "missing.pt"
    code_versions: dict[str, str] = {}

    def method_options(self, method: str, overrides: dict | None = None) -> dict:
        return dict(overrides or {})


def test_bumping_a_code_version_stales_only_that_methods_cells() -> None:
    from benchmarks.sweep.cells import cell_fingerprinter
    from benchmarks.sweep.suite import load_suite

    suite, usecase = load_suite("ae-tiny"), _VersionedUseCase()
    gradient, baseline = Cell("ae", "gradient", True, 0.5, 0), Cell("ae", "tp-magnitude", True, 0.5, 0)
    before = [cell_fingerprinter(suite, usecase)(cell) for cell in (gradient, baseline)]
    usecase.code_versions = {"gradient": "surrogate-2"}
    after = [cell_fingerprinter(suite, usecase)(cell) for cell in (gradient, baseline)]
    assert after[0] != before[0]
    assert after[1] == before[1]


def test_a_subset_run_leaves_out_other_cells_made_by_an_older_method_version(tmp_path) -> None:
    old = ResultStore(tmp_path, lambda c: f"{c.method}-v1", context="suite")
    for cell in CELLS:
        old.put(cell, _row(cell, 1.0))
    baseline = Cell("ae", "tp-magnitude", True, 0.1, 0)
    old.put(baseline, _row(baseline, 2.0))
    new = ResultStore(tmp_path, lambda c: f"{c.method}-v2" if c.method == "gradient" else f"{c.method}-v1", context="suite")
    new.put(CELLS[0], _row(CELLS[0], 3.0))  # e.g. `ctrlprune bench --methods gradient --sparsities 0.1 --seeds 0`
    rows = read_csv(new.write_csv(CELLS[:1]))
    assert [(r["method"], r["metric"]) for r in rows] == [("gradient", 3.0), ("tp-magnitude", 2.0)]
    assert new.stale() == 3 and new.missing(CELLS) == CELLS[1:]
