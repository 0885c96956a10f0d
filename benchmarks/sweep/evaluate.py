"""Prune one cell and score it: the path `ctrlprune bench` takes for every cell and `ctrlprune prune` for one.

`dense` is the method that removes nothing: its result is the dense model itself, so the dense reference
rows are scored exactly like the pruned ones.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchmarks.sweep.stability import kept_indices, linear_cka, mean_cosine
from benchmarks.sweep.store import DENSE
from benchmarks.usecases import UseCase
from pruning import PruneResult, count_params, get_method


def unpruned(model: nn.Module) -> PruneResult:
    """`model` as the result of the method that removes nothing."""
    return PruneResult(model=model, method=DENSE, target=0.0, achieved=0.0, in_band=True, params=count_params(model),
                       coefficients={}, widths={}, evaluations=0, search_seconds=0.0, masked=False, history=[])


def prune_cell(usecase: UseCase, dense: nn.Module, method: str, target: float, *, seed: int, latent_prunable: bool,
               eps: float, options: dict[str, Any]) -> PruneResult:
    """`method` (registered, or `dense`) at `target` on the use case's pruning problem of `dense`; the caller
    seeds torch's RNG first."""
    if method == DENSE:
        return unpruned(dense)
    problem = usecase.problem(dense, seed, latent_prunable)
    return get_method(method)(problem, target, eps=eps, seed=seed, **options)


def score_cell(usecase: UseCase, dense: nn.Module, result: PruneResult, seed: int,
               model: nn.Module | None = None) -> dict[str, Any]:
    """The measured columns of a cell's row: task metric and its spread, sparsity, size, MACs, latent stability,
    the use case's extra metrics and latency, of `model` (default the result's; e.g. the fine-tuned one)."""
    model = (result.model if model is None else model).eval()
    metric, spread = usecase.evaluate(model, seed)
    dense_latents, latents = usecase.latents(dense, seed), usecase.latents(model, seed)
    kept = None
    if latents.shape[1] != dense_latents.shape[1]:
        kept = kept_indices(result.history, usecase.latent_layer, dense_latents.shape[1])
    return {
        "achieved_sparsity": result.achieved, "in_band": result.in_band,
        "metric_name": usecase.metric_name, "metric": metric, "metric_std": spread,
        "params": result.params, "macs": usecase.macs(model),
        "search_seconds": result.search_seconds, "evaluations": result.evaluations,
        "widths": ";".join(f"{k}:{v}" for k, v in result.widths.items()),
        **_stability(dense_latents, latents, kept),
        **usecase.extra_metrics(dense, model, seed, kept),
        **usecase.latency(model),
        "device": str(usecase.device),
        **usecase.recorded_settings(),
    }


def _stability(dense_latents: torch.Tensor, pruned: torch.Tensor, kept: torch.Tensor | None) -> dict[str, float]:
    return {"latent_cosine": mean_cosine(dense_latents, pruned, kept), "latent_cka": linear_cka(dense_latents, pruned)}
