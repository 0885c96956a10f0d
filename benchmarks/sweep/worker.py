"""One process's worker: loads a suite's use case and dense model once, then prunes and scores cells into rows."""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from agents.device import native_bf16, resolve_device
from benchmarks.sweep.cells import cell_seed, finetune_points
from benchmarks.sweep.evaluate import prune_cell, score_cell
from benchmarks.sweep.store import DENSE, Cell
from benchmarks.sweep.suite import Suite, import_plugins
from benchmarks.usecases import UseCase, get_usecase
from pruning import PruneResult


@dataclass
class Worker:
    """Holds one process's use case and dense model, and prunes and scores cells."""

    suite: Suite
    usecase: UseCase
    dense: nn.Module

    @classmethod
    def create(cls, suite: Suite) -> "Worker":
        """The worker of `suite` in this process, after importing the suite's plugins (spawned and Ray workers
        start without them)."""
        import_plugins(suite.plugins)
        usecase = get_usecase(suite.model, suite.checkpoint, **suite.model_options)
        usecase.set_device(resolve_device(suite.device))
        return cls(suite, usecase, usecase.load())

    def run(self, cell: Cell) -> tuple[dict[str, Any], dict[str, Any]]:
        """Prune and score one cell; returns its row and side data."""
        started = time.perf_counter()
        torch.manual_seed(cell_seed(cell))
        options = self.usecase.method_options(cell.method, self.suite.method_options.get(cell.method))
        result = prune_cell(self.usecase, self.dense, cell.method, cell.target_sparsity, seed=cell.seed,
                            latent_prunable=cell.latent_prunable, eps=self.suite.eps, options=options)
        model, finetuned = result.model.eval(), {}
        if cell.finetune_steps:  # the dense model is fine-tuned as a copy (no pruning result)
            model, finetuned = self._finetune(cell, model, None if cell.method == DENSE else result)
        row = {"model": cell.model, "method": cell.method, "latent_prunable": cell.latent_prunable,
               "target_sparsity": cell.target_sparsity, "seed": cell.seed,
               **score_cell(self.usecase, self.dense, result, cell.seed, model), **finetuned}
        if cell.finetune_steps:
            row["finetune_curve"] += f";{cell.finetune_steps}:{row['metric']:.6g}"
        keeps = _keeps_extras(cell, self.suite, self.usecase)
        extras = self.usecase.extras(model, cell.seed) if keeps else {}
        row["cell_seconds"] = time.perf_counter() - started
        return row, {**extras, "search": _plain(result.info), "machine": machine_info()}

    def _finetune(self, cell: Cell, model: nn.Module, result: PruneResult | None) -> tuple[nn.Module, dict[str, Any]]:
        """Fine-tune a cell's model; returns it and the row fields of the fine-tuning (`finetune_curve` still
        lacks its last point, the final evaluation)."""
        started = time.perf_counter()
        before, _ = self.usecase.evaluate(model, cell.seed)
        points = finetune_points(self.suite, cell.finetune_steps)
        run = self.usecase.finetune(model, result, cell.finetune_steps, points, cell.seed)
        curve = ";".join(f"{step}:{value:.6g}" for step, value in [(0, before), *run.curve])
        return run.model.eval(), {"finetune_steps": cell.finetune_steps, "metric_before": before,
                                  "finetune_curve": curve, "finetune_seconds": time.perf_counter() - started}


def _plain(info: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of a method's `info` (numbers, strings, lists of them)."""
    return {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool, list, type(None)))}


def _keeps_extras(cell: Cell, suite: Suite, usecase: UseCase) -> bool:
    """Side data (e.g. reconstructions) only for the first seed, of the dense model and at the use case's
    `extras_level`."""
    level = usecase.extras_level
    at_level = level is not None and abs(cell.target_sparsity - level) < 1e-9
    return cell.seed == suite.seeds[0] and (cell.method == DENSE or at_level)


def machine_info() -> dict[str, Any]:
    """What the wall-time columns depend on: torch version, architecture, cores, torch's CPU kernels and
    whether the CPU does bf16 natively. Stored in run.json and with every cell (a cell may run elsewhere)."""
    return {"torch": str(torch.__version__), "machine": platform.machine(), "cpus": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16()}


_WORKER: Worker | None = None


def init_process(suite: Suite, threads: int) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    _WORKER = Worker.create(suite)


def run_in_process(cell: Cell) -> tuple[Cell, dict[str, Any], dict[str, Any]]:
    assert _WORKER is not None
    return (cell, *_WORKER.run(cell))
