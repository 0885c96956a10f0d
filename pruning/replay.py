"""Replay a torch-pruning history: remove from a dense model the channels a pruning run removed."""
from __future__ import annotations

from typing import Any

import torch_pruning as tp
from torch import nn

from pruning.coefficients import fold_replacement


def replay_history(model: nn.Module, history: list, example_inputs: Any, forward_fn: Any = None,
                   replaced: dict | None = None) -> nn.Module:
    """Remove from `model`, in place, the channels a torch-pruning `history` removed, after folding the pruned
    model's mean replacement (`replaced`, if any) into its consumer biases; the dependency graph is traced on
    `example_inputs` (with `forward_fn`) like the pruning problem that made the history."""
    fold_replacement(model, replaced or {})
    graph = tp.DependencyGraph().build_dependency(model, example_inputs, forward_fn=forward_fn)
    graph.load_pruning_history(history)
    return model
