"""The store never loses or mixes up a finished cell: exact keys, torn files recomputed, atomic writes that
clean up after themselves, one writer at a time, damaged metrics.csv named in one line."""
import errno
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.sweep.store import Cell, ResultStore, StoreError, level_key, read_csv, write_atomic

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _row(cell: Cell, metric: float = 1.0) -> dict:
    return {"model": cell.model, "method": cell.method, "latent_prunable": cell.latent_prunable,
            "target_sparsity": cell.target_sparsity, "seed": cell.seed, "metric": metric, "in_band": True,
            "metric_name": "psnr", "params": 10, "widths": "a:1"}


levels = st.floats(0, 1, exclude_max=True)


@FAST
@given(levels, levels)
def test_distinct_levels_never_share_a_cell_file(a: float, b: float) -> None:
    keys = {Cell("ae", "m", True, x, 0).key for x in (a, b)}
    assert len(keys) == (1 if a == b else 2)


@FAST
@given(st.integers(0, 9999))
def test_levels_with_at_most_four_decimals_keep_their_file_names(n: int) -> None:
    level = float(f"0.{n:04d}")
    assert level_key(level) == f"{level:.4f}"


def test_colliding_levels_are_stored_apart(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, lambda c: "fp")
    cells = [Cell("ae", "m", True, level, 0) for level in (0.3, 0.30000001)]
    for i, cell in enumerate(cells):
        store.put(cell, _row(cell, float(i)))
    rows = read_csv(store.write_csv(cells))
    assert [(r["target_sparsity"], r["metric"]) for r in rows] == [(0.3, 0.0), (0.30000001, 1.0)]


def test_a_file_holding_another_cells_row_is_not_taken_for_it(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, lambda c: "fp")
    mine, other = Cell("ae", "m", True, 0.3, 0), Cell("ae", "m", True, 0.3, 1)
    store.put(other, _row(other))
    store.path(mine).write_text(store.path(other).read_text())  # copied by hand under the wrong name
    assert store.missing([mine]) == [mine]
    assert [r["seed"] for r in read_csv(store.write_csv([mine]))] == [1]
    assert store.stale() == 1


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=6)
torn_rows = st.builds(lambda row, drop: {k: v for k, v in row.items() if k != drop},
                      st.just(_row(Cell("ae", "m", True, 0.5, 0))),
                      st.sampled_from(["model", "method", "latent_prunable", "target_sparsity", "seed", "metric"]))


@FAST
@given(st.one_of(json_values, st.builds(lambda r: {"fingerprint": "fp", "row": r}, json_values | torn_rows),
                 st.binary(max_size=20).map(lambda b: b.decode("latin-1"))))
def test_torn_cell_files_are_recomputed_never_a_traceback(tmp_path: Path, content) -> None:
    store = ResultStore(tmp_path / "s", lambda c: "fp")
    cell = Cell("ae", "m", True, 0.5, 0)
    text = content if isinstance(content, str) else json.dumps(content)
    write_atomic(store.path(cell), text)
    whole = store.get(cell) is not None
    assert store.missing([cell]) == ([] if whole else [cell])
    assert len(store.torn()) + store.stale() + whole == 1
    store.write_csv([cell])
    store.put(cell, _row(cell))
    assert store.missing([cell]) == [] and store.torn() == []


def test_failed_atomic_write_leaves_no_temporary_file_and_keeps_the_old_content(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    path = tmp_path / "cells" / "x.json"
    write_atomic(path, "old")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, "new" * 1000)
    assert path.read_text() == "old" and [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_results_are_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "metrics.csv", "a\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.csv").stat().st_mode) == 0o644


def test_a_second_writer_on_one_store_is_refused(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s", lambda c: "fp")
    with store.lock():
        with pytest.raises(StoreError, match=f"another run \\(pid {os.getpid()}\\) is writing to"):
            with ResultStore(tmp_path / "s", lambda c: "fp").lock():
                pass
    with store.lock():  # released: the next run may write
        pass


@pytest.mark.parametrize("text, line", [
    ("model,method,latent_prunable,target_sparsity,seed,metric_name,metric\nae,m,True,0.5,0,psnr,1.0\nae,m,Tr", 3),
    ("model,method,latent_prunable,target_sparsity,seed,metric_name,metric\nae,m,True,0.5,zero,psnr,1.0\n", 2),
    ("model,method,latent_prunable,target_sparsity,seed,metric_name,metric\nae,m,True,0.5,0,psnr,1.0,9\n", 2),
])
def test_damaged_metrics_csv_is_named_in_one_line(tmp_path: Path, text: str, line: int) -> None:
    (tmp_path / "metrics.csv").write_text(text)
    with pytest.raises(StoreError, match=f"line {line} is cut short or malformed"):
        read_csv(tmp_path / "metrics.csv")
    (tmp_path / "metrics.csv").write_text("model,method\n")
    with pytest.raises(StoreError, match="lacks the column"):
        read_csv(tmp_path / "metrics.csv")
