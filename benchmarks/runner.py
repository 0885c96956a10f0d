"""The sweep runner: every cell of a suite, evaluated and stored as it finishes; resumable.

Data flow per cell: dense model -> pruning problem -> method -> pruned model -> task metric, sparsity,
MACs, latency, latent stability -> one row in the results store.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn
from tqdm import tqdm

from agents.tdmpc.model import native_bf16
from benchmarks.stability import kept_indices, linear_cka, mean_cosine
from benchmarks.store import Cell, ResultStore, fingerprint, write_atomic
from benchmarks.suite import Suite, import_plugins, suite_to_dict
from benchmarks.usecases import UseCase, get_usecase
from pruning import count_params, get_method

DENSE = "dense"
RESULTS_ROOT = Path("results")

if TYPE_CHECKING:
    from benchmarks.executors import Executor


def suite_cells(suite: Suite) -> list[Cell]:
    """All cells of a suite in report order: dense references first, then method x latent x level x seed."""
    cells = [Cell(suite.model, DENSE, True, 0.0, seed) for seed in suite.seeds]
    for method in suite.methods:
        for latent in suite.latent_prunable:
            for level in suite.sparsities:
                cells += [Cell(suite.model, method, latent, level, seed) for seed in suite.seeds]
    return cells


def _file_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return "missing"


def _shared_settings(suite: Suite, usecase: UseCase) -> dict[str, Any]:
    return {"model": suite.model, "checkpoint": _file_digest(usecase.checkpoint), "eps": suite.eps,
            "model_options": suite.model_options}


def cell_fingerprinter(suite: Suite, usecase: UseCase):
    """Hash of everything that decides a cell's row: checkpoint bytes, tolerance, options and the version of
    the use case's code the method depends on (absent when unversioned, so older cells stay valid)."""
    base = _shared_settings(suite, usecase)

    def settings(cell: Cell) -> dict[str, Any]:
        options = usecase.method_options(cell.method, suite.method_options.get(cell.method))
        version = usecase.code_versions.get(cell.method)
        return {**base, "method_options": options, **({"code_version": version} if version else {})}

    return lambda cell: fingerprint(settings(cell))


def _cell_seed(cell: Cell) -> int:
    return int(hashlib.sha256(cell.key.encode()).hexdigest()[:8], 16)


def _stability(dense_latents: torch.Tensor, pruned: torch.Tensor, kept: torch.Tensor | None) -> dict[str, float]:
    return {"latent_cosine": mean_cosine(dense_latents, pruned, kept), "latent_cka": linear_cka(dense_latents, pruned)}


@dataclass
class Worker:
    """Holds one process's use case and dense model, and evaluates cells."""

    suite: Suite
    usecase: UseCase
    dense: nn.Module
    dense_params: int

    @classmethod
    def create(cls, suite: Suite) -> "Worker":
        """The worker of `suite` in this process, after importing the suite's plugins (spawned and Ray workers
        start without them)."""
        import_plugins(suite.plugins)
        usecase = get_usecase(suite.model, suite.checkpoint, **suite.model_options)
        dense = usecase.load()
        return cls(suite, usecase, dense, count_params(dense))

    def run(self, cell: Cell) -> tuple[dict[str, Any], dict[str, Any]]:
        """Evaluate one cell; returns its row and side data."""
        started = time.perf_counter()
        torch.manual_seed(_cell_seed(cell))
        if cell.method == DENSE:
            model, result = self.dense, None
        else:
            problem = self.usecase.problem(self.dense, cell.seed, cell.latent_prunable)
            options = self.usecase.method_options(cell.method, self.suite.method_options.get(cell.method))
            result = get_method(cell.method)(problem, cell.target_sparsity, eps=self.suite.eps, seed=cell.seed, **options)
            model = result.model.eval()
        metric, spread = self.usecase.evaluate(model, cell.seed)
        dense_latents, latents = self.usecase.latents(self.dense, cell.seed), self.usecase.latents(model, cell.seed)
        kept = None
        if result is not None and latents.shape[1] != dense_latents.shape[1]:
            kept = kept_indices(result.history, self.usecase.latent_layer, dense_latents.shape[1])
        row = {
            "model": cell.model, "method": cell.method, "latent_prunable": cell.latent_prunable,
            "target_sparsity": cell.target_sparsity, "seed": cell.seed,
            "achieved_sparsity": result.achieved if result else 0.0,
            "in_band": result.in_band if result else True,
            "metric_name": self.usecase.metric_name, "metric": metric, "metric_std": spread,
            "params": result.params if result else self.dense_params,
            "macs": self.usecase.macs(model),
            "search_seconds": result.search_seconds if result else 0.0,
            "evaluations": result.evaluations if result else 0,
            "widths": ";".join(f"{k}:{v}" for k, v in result.widths.items()) if result else "",
            **_stability(dense_latents, latents, kept),
            **self.usecase.extra_metrics(self.dense, model, cell.seed, kept),
            **self.usecase.latency(model),
        }
        extras = self.usecase.extras(model, cell.seed) if _keeps_extras(cell, self.suite) else {}
        row["cell_seconds"] = time.perf_counter() - started
        return row, {**extras, "search": _plain(result.info) if result else {}, "machine": machine_info()}


def _plain(info: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of a method's `info` (numbers, strings, lists of them)."""
    return {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool, list, type(None)))}


def _keeps_extras(cell: Cell, suite: Suite) -> bool:
    """Side data (e.g. reconstructions) only for the first seed at the paper's 20 % level and the dense model."""
    return cell.seed == suite.seeds[0] and (cell.method == DENSE or abs(cell.target_sparsity - 0.2) < 1e-9)


_WORKER: Worker | None = None


def _init_process(suite: Suite, threads: int) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    _WORKER = Worker.create(suite)


def _run_in_process(cell: Cell) -> tuple[Cell, dict[str, Any], dict[str, Any]]:
    assert _WORKER is not None
    return (cell, *_WORKER.run(cell))


def _execute(suite: Suite, todo: list[Cell], workers: int,
             executor: Executor | None) -> Iterator[tuple[Cell, dict, dict]]:
    """Yield finished cells from `executor` (default: in-process, or a local pool of `workers` processes)."""
    from benchmarks.executors import LocalExecutor

    yield from (executor or LocalExecutor()).run(suite, todo, workers)


def open_store(suite: Suite, root: Path = RESULTS_ROOT, full_suite: Suite | None = None) -> ResultStore:
    """The results store of `suite` under `root`, fingerprinting cells with its use case; fails early (missing
    or corrupt checkpoint) before any result is touched. When `suite` is a subset of `full_suite` (fewer
    methods, hence fewer method options), the full suite fingerprints the stored cells of the other methods."""
    import_plugins(suite.plugins)
    usecase = get_usecase(suite.model, suite.checkpoint, **suite.model_options)
    usecase.load()
    return ResultStore(root / suite.name, cell_fingerprinter(full_suite or suite, usecase),
                       context=fingerprint(_shared_settings(suite, usecase)))


def pending_cells(suite: Suite, root: Path = RESULTS_ROOT,
                  full_suite: Suite | None = None) -> tuple[list[Cell], list[Cell], list[dict[str, Any]]]:
    """(every cell of `suite`, the cells a run would compute, the stored rows of the others); reads the store,
    writes nothing."""
    cells, store = suite_cells(suite), open_store(suite, root, full_suite)
    todo = store.missing(cells)
    return cells, todo, store.rows(cells)


def estimate_seconds(todo: list[Cell], done: list[dict[str, Any]]) -> tuple[float, list[str]]:
    """Cell time `todo` would take on one worker, from the mean stored `cell_seconds` of each method and latent
    setting (of the method alone when that setting has none); also the methods with no timed cell."""
    times: dict[tuple[str, bool | None], list[float]] = {}
    for row in done:
        seconds = row.get("cell_seconds", float("nan"))
        if seconds == seconds:
            times.setdefault((row["method"], row["latent_prunable"]), []).append(seconds)
            times.setdefault((row["method"], None), []).append(seconds)
    total, unknown = 0.0, []
    for cell in todo:
        known = times.get((cell.method, cell.latent_prunable)) or times.get((cell.method, None))
        if known:
            total += sum(known) / len(known)
        elif cell.method not in unknown:
            unknown.append(cell.method)
    return total, unknown


def describe_cells(cells: list[Cell]) -> list[str]:
    """One line per method, latent setting and set of seeds sharing the same levels, e.g.
    "torch-l2 (latent kept), seeds 1, 2: rho 0.1, 0.3 (4 cells)"."""
    levels: dict[tuple[str, bool, int], list[float]] = {}
    for cell in cells:
        levels.setdefault((cell.method, cell.latent_prunable, cell.seed), []).append(cell.target_sparsity)
    merged: dict[tuple[str, bool, tuple[float, ...]], list[int]] = {}
    for (method, latent, seed), lvs in levels.items():
        merged.setdefault((method, latent, tuple(sorted(lvs))), []).append(seed)
    lines = []
    for (method, latent, lvs), seeds in merged.items():
        label = method + ("" if latent or method == DENSE else " (latent kept)")
        seed_text = ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))
        rho = ", ".join(f"{lv:g}" for lv in lvs)
        lines.append(f"{label}, {seed_text}: rho {rho} ({len(lvs) * len(seeds)} cells)")
    return lines


def run_suite(suite: Suite, root: Path = RESULTS_ROOT, fresh: bool = False, workers: int | None = None,
              quiet: bool = False, on_cell: Callable[[Cell, dict[str, Any]], None] | None = None,
              executor: Executor | None = None, command: str = "", full_suite: Suite | None = None) -> ResultStore:
    """Run every missing cell of `suite` on `executor` (default: local), store each as it finishes, rebuild metrics.csv.

    `on_cell(cell, row)` is called after each finished cell is stored (e.g. to print its row).
    `command` is the shell command that reproduces this run; run.json keeps it for the report. `full_suite`
    is the suite `suite` was cut from (`--methods`, ...): metrics.csv lists the still-current cells of it too.
    """
    store = open_store(suite, root, full_suite)
    if fresh:
        store.clear()
    store.sweep_temporaries()
    cells = suite_cells(suite)
    todo = store.missing(cells)
    if not quiet:
        print(f"{suite!r}: {len(cells)} cells, {len(cells) - len(todo)} already done, {len(todo)} to run")
        stale = store.stale()
        if stale:
            print(f"{stale} stored cell(s) were made under other settings or an older method version: "
                  "metrics.csv leaves them out until a run recomputes them")
    started = time.perf_counter()
    with tqdm(total=len(todo), desc=suite.name, unit="cell", disable=quiet) as bar:
        for cell, row, extra in _execute(suite, todo, workers or suite.workers, executor):
            store.put(cell, row, extra)
            store.write_csv(cells)
            bar.set_postfix_str(f"{cell} -> {row['metric_name']} {row['metric']:.2f}")
            bar.update()
            if on_cell is not None:
                on_cell(cell, row)
    store.write_csv(cells)
    _write_run_info(store, suite, time.perf_counter() - started, len(todo), command)
    return store


def machine_info() -> dict[str, Any]:
    """What the wall-time columns depend on: torch version, architecture, cores, torch's CPU kernels and
    whether the CPU does bf16 natively. Stored in run.json and with every cell (a cell may run elsewhere)."""
    return {"torch": str(torch.__version__), "machine": platform.machine(), "cpus": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16()}


def _write_run_info(store: ResultStore, suite: Suite, seconds: float, computed: int, command: str) -> None:
    """run.json: the suite as run, the command that ran it ("" from Python), how many cells this run computed,
    its wall time and the machine."""
    info = {"suite": suite_to_dict(suite), "command": command, "cells_computed": computed,
            "wall_seconds": round(seconds, 1), "threads": torch.get_num_threads(), **machine_info()}
    write_atomic(store.root / "run.json", json.dumps(info, indent=1))
