"""Cost of a (pruned) network on this machine: MACs and CPU latency."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
import torch.nn as nn
import torch_pruning as tp


def call_model(model: nn.Module, inputs: Any) -> Any:
    """model(**inputs) for a dict, model(*inputs) for a tuple or list, model(inputs) otherwise."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


class _ForwardFn(nn.Module):
    """Wraps a model so that calling it runs `forward_fn(model, inputs)` (for MAC counting)."""

    def __init__(self, model: nn.Module, forward_fn: Callable[[nn.Module, Any], Any]) -> None:
        super().__init__()
        self.model = model
        self.forward_fn = forward_fn

    def forward(self, inputs: Any) -> Any:
        return self.forward_fn(self.model, inputs)


def count_macs(model: nn.Module, example_inputs: Any,
               forward_fn: Callable[[nn.Module, Any], Any] | None = None) -> int:
    """Multiply-accumulates of one forward (or one `forward_fn` call) on `example_inputs`."""
    if forward_fn is not None:
        model, example_inputs = _ForwardFn(model, forward_fn), (example_inputs,)
    macs, _ = tp.utils.count_ops_and_params(model, example_inputs)
    return int(macs)


def measure_latency_ms(model: nn.Module, example_input: Any, repeats: int = 50, warmup: int = 5) -> float:
    """Median CPU wall time of one forward in milliseconds (inference mode)."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            call_model(model, example_input)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
