"""Latent stability: how close a pruned model's latents stay to the dense model's."""
from __future__ import annotations

import torch


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centered kernel alignment of two representations (N, d1), (N, d2); 1 = same up to rotation/scale."""
    x = (x - x.mean(0)).double()
    y = (y - y.mean(0)).double()
    cross = (y.T @ x).norm() ** 2
    denom = (x.T @ x).norm() * (y.T @ y).norm()
    return float(cross / denom) if denom > 0 else 0.0


def mean_cosine(dense: torch.Tensor, pruned: torch.Tensor, kept: torch.Tensor | None = None) -> float:
    """Mean per-sample cosine similarity; a pruned latent is placed back at its kept dense coordinates."""
    if kept is not None and pruned.shape[1] != dense.shape[1]:
        full = torch.zeros_like(dense)
        full[:, kept] = pruned
        pruned = full
    return float(torch.nn.functional.cosine_similarity(dense.double(), pruned.double(), dim=1).mean())


def kept_indices(history: list, layer: str, width: int) -> torch.Tensor:
    """Original indices of `layer`'s output channels that survive a torch-pruning history."""
    kept = torch.arange(width)
    for name, is_out, idxs in history:
        if name == layer and is_out:
            mask = torch.ones(len(kept), dtype=torch.bool)
            mask[torch.as_tensor(idxs, dtype=torch.long)] = False
            kept = kept[mask]
    return kept
