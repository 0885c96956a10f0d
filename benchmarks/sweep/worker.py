"""One process's worker: loads a suite's use case and dense model once, then evaluates cells into rows."""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from agents.device import resolve_device
from agents.tdmpc.model import native_bf16
from benchmarks.sweep.cells import cell_seed, finetune_points
from benchmarks.sweep.stability import kept_indices, linear_cka, mean_cosine
from benchmarks.sweep.store import DENSE, Cell
from benchmarks.sweep.suite import Suite, import_plugins
from benchmarks.usecases import UseCase, get_usecase
from pruning import PruneResult, count_params, get_method

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
        usecase.set_device(resolve_device(suite.device))
        dense = usecase.load()
        return cls(suite, usecase, dense, count_params(dense))

    def run(self, cell: Cell) -> tuple[dict[str, Any], dict[str, Any]]:
        """Evaluate one cell; returns its row and side data."""
        started = time.perf_counter()
        torch.manual_seed(cell_seed(cell))
        if cell.method == DENSE:
            model, result = self.dense, None
        else:
            problem = self.usecase.problem(self.dense, cell.seed, cell.latent_prunable)
            options = self.usecase.method_options(cell.method, self.suite.method_options.get(cell.method))
            result = get_method(cell.method)(problem, cell.target_sparsity, eps=self.suite.eps, seed=cell.seed, **options)
            model = result.model.eval()
        finetuned: dict[str, Any] = {}
        if cell.finetune_steps:
            model, finetuned = self._finetune(cell, model, result)
        metric, spread = self.usecase.evaluate(model, cell.seed)
        if cell.finetune_steps:
            finetuned["finetune_curve"] += f";{cell.finetune_steps}:{metric:.6g}"
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
            "device": str(self.usecase.device),
            **finetuned,
        }
        extras = self.usecase.extras(model, cell.seed) if _keeps_extras(cell, self.suite, self.usecase) else {}
        row["cell_seconds"] = time.perf_counter() - started
        return row, {**extras, "search": _plain(result.info) if result else {}, "machine": machine_info()}

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
