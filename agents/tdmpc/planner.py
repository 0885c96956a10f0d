"""MPPI planning in TOLD's latent space, mixed with policy rollouts (TD-MPC inference)."""
from __future__ import annotations

import torch

from agents.tdmpc.config import TDMPCConfig
from agents.tdmpc.model import TOLD, compute_precision

INITIAL_STD = 2.0
"""Std of the planner's first sampling iteration at every step (and the ceiling of later ones)."""


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """Linear interpolation from start to end over `duration` steps, constant afterwards."""
    mix = min(max(step / duration, 0.0), 1.0) if duration > 0 else 1.0
    return (1.0 - mix) * start + mix * end


def planning_horizon(cfg: TDMPCConfig, step: int) -> int:
    """Horizon at an agent step: grows from 1 to cfg.horizon (upstream horizon_schedule)."""
    return int(min(cfg.horizon, linear_schedule(1, cfg.horizon, cfg.horizon_schedule_steps, step)))


def std_floor(cfg: TDMPCConfig, step: int) -> float:
    """Lower bound of the planner's std at an agent step (upstream std_schedule)."""
    return linear_schedule(cfg.std_init, cfg.min_std, cfg.std_schedule_steps, step)


def estimate_value(model: TOLD, z: torch.Tensor, actions: torch.Tensor, cfg: TDMPCConfig) -> torch.Tensor:
    """Discounted predicted rewards of action sequences [H, N, act] from latents [N, latent], plus
    the discounted terminal value min(Q1, Q2) at a noisy policy action."""
    value, discount = torch.zeros(z.shape[0], 1), 1.0
    for a in actions:
        z, r = model.next(z, a)
        value += discount * r.float()
        discount *= cfg.discount
    q1, q2 = model.Q(z, model.pi_action(z, cfg.min_std))
    return value + discount * torch.minimum(q1, q2).float()


class MPPIPlanner:
    """Plans one action per call; keeps the last mean to warm-start the next call of an episode."""

    def __init__(self, cfg: TDMPCConfig, act_dim: int) -> None:
        self.cfg, self.act_dim = cfg, act_dim
        self.num_pi = int(cfg.mixture_coef * cfg.num_samples)
        self._prev_mean: torch.Tensor | None = None

    def __repr__(self) -> str:
        c = self.cfg
        return (f"MPPIPlanner(samples={c.num_samples}+{self.num_pi} pi, elites={c.num_elites}, "
                f"iterations={c.iterations}, horizon={c.horizon})")

    def _policy_rollouts(self, model: TOLD, z0: torch.Tensor, horizon: int) -> torch.Tensor:
        z = z0.expand(self.num_pi, -1)
        actions = []
        for _ in range(horizon):
            actions.append(model.pi_action(z, self.cfg.min_std))
            z, _ = model.next(z, actions[-1])
        return torch.stack(actions)

    @torch.inference_mode()
    def plan(self, model: TOLD, obs: torch.Tensor, step: int, eval_mode: bool, t0: bool) -> torch.Tensor:
        """Action in [-1, 1] for one observation [obs]; exploration noise unless eval_mode."""
        with compute_precision(self.cfg.precision):
            return self._plan(model, obs, step, eval_mode, t0)

    def _plan(self, model: TOLD, obs: torch.Tensor, step: int, eval_mode: bool, t0: bool) -> torch.Tensor:
        cfg, horizon = self.cfg, planning_horizon(self.cfg, step)
        z0 = model.h(obs.unsqueeze(0))
        pi_actions = self._policy_rollouts(model, z0, horizon).float() if self.num_pi else None
        z = z0.expand(cfg.num_samples + self.num_pi, -1)
        mean = torch.zeros(horizon, self.act_dim)
        std = torch.full((horizon, self.act_dim), INITIAL_STD)
        if not t0 and self._prev_mean is not None:
            keep = min(horizon, self._prev_mean.shape[0]) - 1
            mean[:keep] = self._prev_mean[1:keep + 1]
        floor = std_floor(cfg, step)
        for _ in range(cfg.iterations):
            noise = torch.randn(horizon, cfg.num_samples, self.act_dim)
            actions = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp_(-1, 1)
            if pi_actions is not None:
                actions = torch.cat([actions, pi_actions], dim=1)
            value = estimate_value(model, z, actions, cfg).nan_to_num_(0).squeeze(1)
            elite_value, elite_idx = torch.topk(value, cfg.num_elites)
            elites = actions[:, elite_idx]
            score = torch.exp(cfg.temperature * (elite_value - elite_value.max()))
            score /= score.sum()
            w = score.view(1, -1, 1)
            new_mean = (w * elites).sum(1)
            new_std = ((w * (elites - new_mean.unsqueeze(1)) ** 2).sum(1)).sqrt().clamp_(floor, INITIAL_STD)
            mean, std = cfg.momentum * mean + (1 - cfg.momentum) * new_mean, new_std
        self._prev_mean = mean
        action = elites[0, torch.multinomial(score, 1).item()]
        if not eval_mode:
            action = action + std[0] * torch.randn(self.act_dim)
        return action.clamp(-1, 1)
