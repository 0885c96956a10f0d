"""What every pruning method returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn


@dataclass
class PruneResult:
    """A pruned model and how it was found."""

    model: nn.Module = field(repr=False)
    """Pruned model (physically smaller, or masked for the torch-* methods)."""
    method: str
    """Registered method name."""
    target: float
    """Target sparsity rho*."""
    achieved: float
    """Achieved sparsity (effective sparsity for mask methods)."""
    in_band: bool
    """|achieved - target| <= eps."""
    params: int
    """Remaining parameters (effective for mask methods)."""
    coefficients: dict[str, float]
    """Pruning coefficient per group label (the uniform ratio for baselines)."""
    widths: dict[str, int]
    """Kept width per group label."""
    evaluations: int
    """Task-metric evaluations spent by the search."""
    search_seconds: float
    """Wall time of the search (the caller's final evaluation excluded)."""
    masked: bool
    """True for torch.nn.utils.prune methods (zeroed, not removed)."""
    history: list = field(repr=False)
    """torch-pruning pruning history ([] for masks)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Method-specific facts worth reporting (grid size, budget, final loss...)."""
    replaced: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict, repr=False)
    """Mean replacement folded into consumer biases before removal: consumer layer -> (removed input indices,
    their means); apply it to a target network with `fold_replacement` before replaying `history`."""

    def __repr__(self) -> str:
        band = "in band" if self.in_band else "OUT OF BAND"
        return (f"PruneResult({self.method}, target={self.target:.3f}, achieved={self.achieved:.4f} ({band}), "
                f"params={self.params}, evaluations={self.evaluations}, search={self.search_seconds:.2f}s, "
                f"masked={self.masked}, widths={self.widths})")
