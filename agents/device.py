"""The `--device auto|cpu|cuda` switch: one name, resolved to a torch device or refused in one line."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")
"""`auto` is CUDA where a GPU is available, else the CPU. (No torch import here: the CLI builds its parser
from this tuple before it imports torch.)"""


def resolve_device(name: str) -> torch.device:
    """The torch device that `name` (one of DEVICES) means on this machine; a ValueError for `cuda` without
    a GPU or an unknown name."""
    import torch

    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available on this machine (torch "
                         f"{torch.__version__}); use --device cpu or auto")
    return torch.device(name)


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX). Without it, torch's bf16 GEMM
    is emulated and several times slower than fp32 (`python -m benchmarks.tdmpc_speed` measures both), so
    `agents.tdmpc.model.compute_precision` runs bf16 Linears through `Bf16LinearInFp32` instead."""
    import torch

    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(probe is None for probe in probes):
        return True  # this torch cannot tell: assume the hardware is fine rather than warn wrongly
    return any(probe() for probe in probes if probe is not None)
