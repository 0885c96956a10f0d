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
