"""Shared test set-up: headless MuJoCo, the repository root as working directory, one torch thread."""
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)  # tiny models: one thread is fastest and never oversubscribes a shared core


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="module")
def tiny_agent_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny-preset TD-MPC agent for cartpole-swingup (seed 0, step 10,000: schedules at their end)."""
    from agents.tdmpc import TDMPC, preset
    from agents.tdmpc.checkpoint import save_agent

    torch.manual_seed(0)
    agent = TDMPC(preset("tiny"), obs_dim=5, act_dim=1)
    agent.step = 10_000
    path = tmp_path_factory.mktemp("agent") / "agent.pt"
    save_agent(path, agent, "cartpole-swingup")
    return path
