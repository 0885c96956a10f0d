"""TD-MPC's update through torch.compile equals the eager update (tiny agent; the CUDA part skips without a GPU)."""
import copy

import pytest
import torch

from agents.tdmpc import TDMPC, ReplayBuffer, preset
from agents.tdmpc.agent import resolve_update_mode

CFG = preset("tiny", min_std=0.0)
"""No policy noise: the compiled and eager updates draw no random numbers, so they must agree."""


def filled_buffer(device: str = "cpu") -> ReplayBuffer:
    g = torch.Generator().manual_seed(0)
    buf = ReplayBuffer(5, 1, 200, CFG.horizon, device=device)
    for _ in range(4):
        buf.add(torch.randn(51, 5, generator=g), torch.rand(50, 1, generator=g) * 2 - 1, torch.rand(50, generator=g))
    return buf


def paired_agents(device: str) -> tuple[TDMPC, TDMPC]:
    torch.manual_seed(0)
    eager = TDMPC(CFG, 5, 1, device, update_mode="eager")
    compiled = TDMPC(CFG, 5, 1, device, update_mode="compile")
    compiled.model.load_state_dict(eager.model.state_dict())
    compiled.reset_training_state(copy.deepcopy(eager.target))
    return eager, compiled


def updates_agree(device: str, tol: float) -> None:
    eager, compiled = paired_agents(device)
    buffers = filled_buffer(device), filled_buffer(device)
    for step in range(3):
        torch.manual_seed(step)  # the same prioritized batch for both
        a = eager.update(buffers[0], step)
        torch.manual_seed(step)
        b = compiled.update(buffers[1], step)
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=tol, abs=tol), key
    for p, q in zip(eager.model.parameters(), compiled.model.parameters()):
        torch.testing.assert_close(q, p, rtol=tol, atol=tol)
    torch.testing.assert_close(buffers[1].priority, buffers[0].priority, rtol=tol, atol=tol)


def test_auto_is_compile_on_cuda_and_eager_on_the_cpu() -> None:
    assert resolve_update_mode("auto", torch.device("cpu")) == "eager"
    assert resolve_update_mode("auto", torch.device("cuda")) == "compile"
    with pytest.raises(ValueError, match="update mode must be one of"):
        resolve_update_mode("graphs", torch.device("cpu"))


def test_a_compiled_update_equals_the_eager_one_on_the_cpu() -> None:
    updates_agree("cpu", 1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_compiled_update_equals_the_eager_one_on_cuda() -> None:
    updates_agree("cuda", 1e-3)
