"""The sweep runner: every cell of a suite, evaluated and stored as it finishes; resumable.

Data flow per cell: dense model -> pruning problem -> method -> pruned model -> task metric, sparsity,
MACs, latency, latent stability -> one row in the results store.
"""
from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from tqdm import tqdm

from agents.device import resolve_device

from benchmarks.sweep.cells import cell_fingerprinter, shared_settings, suite_cells
from benchmarks.sweep.store import Cell, ResultStore, fingerprint
from benchmarks.sweep.suite import Suite, import_plugins, suite_to_dict
from benchmarks.sweep.worker import machine_info
from benchmarks.usecases import get_usecase

RESULTS_ROOT = Path("results")


if TYPE_CHECKING:
    from benchmarks.sweep.executors import Executor


def _execute(suite: Suite, todo: list[Cell], workers: int,
             executor: Executor | None) -> Iterator[tuple[Cell, dict, dict]]:
    """Yield finished cells from `executor` (default: in-process, or a local pool of `workers` processes)."""
    from benchmarks.sweep.executors import LocalExecutor

    yield from (executor or LocalExecutor()).run(suite, todo, workers)


def open_store(suite: Suite, root: Path = RESULTS_ROOT, full_suite: Suite | None = None) -> ResultStore:
    """The results store of `suite` under `root`, fingerprinting cells with its use case; fails early (missing
    or corrupt checkpoint) before any result is touched. When `suite` is a subset of `full_suite` (fewer
    methods, hence fewer method options), the full suite fingerprints the stored cells of the other methods."""
    import_plugins(suite.plugins)
    usecase = get_usecase(suite.model, suite.checkpoint, **suite.model_options)
    usecase.load()
    return ResultStore(root / suite.name, cell_fingerprinter(full_suite or suite, usecase),
                       context=fingerprint(shared_settings(suite, usecase)))


def pending_cells(suite: Suite, root: Path = RESULTS_ROOT,
                  full_suite: Suite | None = None) -> tuple[list[Cell], list[Cell], list[dict[str, Any]]]:
    """(every cell of `suite`, the cells a run would compute, the stored rows of the others); reads the store,
    writes nothing."""
    cells, store = suite_cells(suite), open_store(suite, root, full_suite)
    todo = store.missing(cells)
    return cells, todo, store.finished_rows(cells)


def run_suite(suite: Suite, root: Path = RESULTS_ROOT, fresh: bool = False, workers: int | None = None,
              quiet: bool = False, on_cell: Callable[[Cell, dict[str, Any]], None] | None = None,
              executor: Executor | None = None, command: str = "", full_suite: Suite | None = None) -> ResultStore:
    """Run every missing cell of `suite` on `executor` (default: local), store each as it finishes, rebuild metrics.csv.

    `fresh` recomputes the finished cells of `suite` too, each replaced only when its new row is stored; no
    other cell file is touched. The run holds the store's lock: a second run on the same store is refused.
    `on_cell(cell, row)` is called after each finished cell is stored (e.g. to print its row).
    `command` is the shell command that reproduces this run; run.json keeps it for the report. `full_suite`
    is the suite `suite` was cut from (`--methods`, ...): metrics.csv lists the still-current cells of it too.
    """
    store = open_store(suite, root, full_suite)
    with store.lock():
        store.sweep_temporaries()
        cells = suite_cells(suite)
        todo = cells if fresh else store.missing(cells)
        if not quiet:
            _report_state(store, suite, cells, todo, fresh)
        started = time.perf_counter()
        with tqdm(total=len(todo), desc=suite.name, unit="cell", disable=quiet) as bar, \
                closing(_execute(suite, todo, workers or suite.workers, executor)) as finished:
            for cell, row, extra in finished:
                store.put(cell, row, extra)
                store.write_csv(cells)
                bar.set_postfix_str(f"{cell} -> {row['metric_name']} {row['metric']:.2f}")
                bar.update()
                if on_cell is not None:
                    on_cell(cell, row)
        store.write_csv(cells)
        _write_run_info(store, suite, time.perf_counter() - started, len(todo), command)
    return store


def _report_state(store: ResultStore, suite: Suite, cells: list[Cell], todo: list[Cell], fresh: bool) -> None:
    """What the run will do: cells done and to run, and the stored files it ignores or recomputes."""
    verb = "to recompute (--fresh)" if fresh else "to run"
    print(f"{suite!r}: {len(cells)} cells, {len(cells) - len(todo)} already done, {len(todo)} {verb}")
    stale, torn = store.stale(), store.torn()
    if stale:
        print(f"{stale} stored cell(s) were made under other settings or an older method version: "
              "metrics.csv leaves them out until a run recomputes them")
    if torn:
        names = ", ".join(p.name for p in torn[:3]) + (" ..." if len(torn) > 3 else "")
        print(f"{len(torn)} cell file(s) are torn (cut short or not a cell: {names}); the suite's are recomputed, "
              "and each is replaced only when its new row is stored")


def _write_run_info(store: ResultStore, suite: Suite, seconds: float, computed: int, command: str) -> None:
    """run.json: the suite as run, the command that ran it ("" from Python), how many cells this run computed,
    its wall time and the machine."""
    info = {"suite": suite_to_dict(suite), "command": command, "cells_computed": computed,
            "wall_seconds": round(seconds, 1), "threads": torch.get_num_threads(),
            "device": str(resolve_device(suite.device)), **machine_info()}
    store.write_run_info(info)
