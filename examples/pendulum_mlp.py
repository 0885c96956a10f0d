"""Worked example: a new environment and a new agent (use case) in one file.

Importing this module registers
  * the task `pendulum-short`: gymnasium's Pendulum-v1 (actions in [-1, 1]) cut to 120-step episodes, and
  * the use case `pendulum-mlp`: a 4-layer MLP policy with components `body` and `head`, trained in a few
    seconds by behaviour cloning of a hand-written swing-up controller and scored by episode return.

    from benchmarks.sweep.runner import run_suite
    from benchmarks.sweep.suite import Suite
    import examples.pendulum_mlp  # noqa: F401  (registers the task and the use case)
    run_suite(Suite(name="pendulum", model="pendulum-mlp", methods=("tp-magnitude", "gradient"), sparsities=(0.3,)))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from benchmarks.usecases import UseCase, register_usecase
from envs import make_env, register_task
from pruning import PruningProblem

TASK = "pendulum-short"
register_task(TASK, lambda seed: gym.wrappers.TimeLimit(make_env("Pendulum-v1", seed), max_episode_steps=120))


def expert(obs: torch.Tensor) -> torch.Tensor:
    """Hand-written swing-up controller on [cos θ, sin θ, θ'] -> action in [-1, 1]: energy pumping, then PD."""
    cos, sin, speed = obs.unbind(-1)
    angle = torch.atan2(sin, cos)
    energy = 0.5 * speed**2 + 10.0 * (cos - 1.0)  # zero when resting upright
    pump = -2.0 * torch.sign(speed) * energy
    balance = -(8.0 * angle + 1.5 * speed)
    return (torch.where(cos > 0.85, balance, pump) / 2.0).clamp(-1, 1).unsqueeze(-1)


def sample_states(count: int, seed: int) -> torch.Tensor:
    """Observations with uniform angle in [-π, π) and angular speed in [-8, 8]."""
    gen = torch.Generator().manual_seed(seed)
    angle = (torch.rand(count, generator=gen) * 2 - 1) * torch.pi
    speed = (torch.rand(count, generator=gen) * 2 - 1) * 8.0
    return torch.stack([angle.cos(), angle.sin(), speed], dim=1)


@dataclass
class PolicyConfig:
    """Widths and behaviour-cloning schedule of the MLP policy."""

    hidden: int = 64
    """width of the two body layers"""
    head: int = 32
    """width of the head's hidden layer"""
    states: int = 2048
    """expert-labelled training states"""
    steps: int = 300
    """Adam steps of behaviour cloning (full batch)"""
    lr: float = 3e-3
    """Adam learning rate"""
    seed: int = 0
    """seed of the initial weights and of the training states"""


class MLPPolicy(nn.Module):
    """obs (3) -> body (two ReLU layers) -> head (ReLU layer, tanh action)."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(cfg.hidden, cfg.head), nn.ReLU(), nn.Linear(cfg.head, 1), nn.Tanh())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(obs))


def train_policy(cfg: PolicyConfig) -> MLPPolicy:
    """Behaviour cloning of `expert` by full-batch MSE (a few seconds on one thread)."""
    torch.manual_seed(cfg.seed)
    policy, states = MLPPolicy(cfg), sample_states(cfg.states, cfg.seed)
    target = expert(states)
    optim = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # matrices this small run slower on several threads
    try:
        for _ in range(cfg.steps):
            loss = nn.functional.mse_loss(policy(states), target)
            optim.zero_grad()
            loss.backward()
            optim.step()
    finally:
        torch.set_num_threads(threads)
    return policy.eval()


def episode_returns(policy: nn.Module, episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of `policy` on `pendulum-short`, one seeded reset per episode."""
    env, returns = make_env(TASK, seed), []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + i)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                action = policy(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0].numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return returns


@register_usecase("pendulum-mlp")
class PendulumMLPUseCase(UseCase):
    """An MLP swing-up policy for Pendulum: grid search scores imitation error, evaluation the episode return.

    Options: `episodes` (evaluation episodes, default 3), `train_steps` (behaviour-cloning steps, default 300).
    The checkpoint argument is unused: the policy is trained (deterministically) on first load.
    """

    name = "pendulum-mlp"
    metric_name = "return"
    latent_layer = "body.2"

    def __init__(self, checkpoint: str = "", episodes: int = 3, train_steps: int = 300) -> None:
        super().__init__(checkpoint)
        self.episodes, self.cfg = episodes, PolicyConfig(steps=train_steps)
        self.valid, self.test = sample_states(1024, seed=1), sample_states(1024, seed=2)
        self._policy: MLPPolicy | None = None

    def load(self) -> nn.Module:
        if self._policy is None:
            self._policy = train_policy(self.cfg)
        return self._policy

    def problem(self, model: nn.Module, seed: int, latent_prunable: bool) -> PruningProblem:
        calib = sample_states(4 * 256, seed=100 + seed).split(256)
        valid_target = expert(self.valid)

        def metric(candidate: nn.Module) -> float:
            with torch.no_grad():
                return -float(nn.functional.mse_loss(candidate(self.valid), valid_target))

        def surrogate(masked: nn.Module, step: int) -> torch.Tensor:
            states = calib[-1] if step < 0 else calib[step % (len(calib) - 1)]
            return nn.functional.mse_loss(masked(states), expert(states))

        return PruningProblem(model=model, components={"body": "body", "head": "head"}, output_layers=["head.2"],
                              example_inputs=self.valid[:4], latent_prunable=latent_prunable,
                              metric=metric, surrogate=surrogate)

    def evaluate(self, model: nn.Module, seed: int) -> tuple[float, float]:
        returns = episode_returns(model, self.episodes, seed)
        return float(np.mean(returns)), float(np.std(returns))

    def latents(self, model: nn.Module, seed: int) -> torch.Tensor:
        with torch.no_grad():
            return model.body(self.test)

    def latency_inputs(self) -> dict[str, Any]:
        return {"b1": self.test[:1], "b256": self.test[:256]}
