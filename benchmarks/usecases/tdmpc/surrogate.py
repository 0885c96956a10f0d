"""The gradient method's surrogate on TD-MPC: a planner-aware distillation to the dense agent on states it visits.

MPPI ranks candidate action sequences by their estimated value (discounted predicted rewards plus the
terminal min(Q1, Q2)) and weights them by exp(temperature * value), which ignores a shift of all values of
one state. Per visited state, the surrogate scores the same candidate sequences under the dense and the
pruned model and adds, in this order:
- the error of the *centered* values (each state's mean over its candidates removed),
- the error of the terminal twin gap Q1 - Q2 (min(Q1, Q2) lets a head that drops below its twin take over),
  both in units of the dense centered values' spread,
- the error of the centered predicted rewards in their own units (`reward`, off by default),
- the error of the policy's actions (`pi`),
- KL(pruned || dense) of the planner's weights over each state's candidates (`choice`),
- the shortfall of the pruned policy's own rollouts, valued by the dense model (`proposal`, off by default).
Sequences are imagined with the model's own rollout, `TOLD.imagine`, as the planner's are; the terminal value
takes the policy's action without noise, where the planner adds noise of std `min_std` (docs/METHOD.md). docs/METHOD.md explains each term and the measurements behind the weights.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from agents.tdmpc import TOLD

Rollout = Callable[[TOLD, torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]
"""(model, latents [N, d], action sequences [H, N, act], discount) -> (discounted rewards [N, 1], discounted
terminal values of both Q heads [N, 2])."""
Batch = Callable[[int], tuple[torch.Tensor, torch.Tensor]]
"""step -> (indices of visited states [B], candidate action sequences [H, B*K, act]); step < 0: held out."""


def imagine(model: TOLD, z: torch.Tensor, actions: torch.Tensor, discount: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Discounted predicted rewards [N, 1] of action sequences [H, N, act] from latents [N, d], and the
    discounted terminal values of both Q heads [N, 2] at the policy's action without noise: the model's own
    rollout (`TOLD.imagine`, which the planner's value uses with noise), whose value is rewards + min(heads)."""
    imagined = model.imagine(z, actions, discount)
    return imagined.rewards, imagined.heads


def planner_value(model: TOLD, z: torch.Tensor, actions: torch.Tensor, discount: float,
                  rollout: Rollout = imagine) -> torch.Tensor:
    """MPPI's estimate [N, 1] of action sequences: discounted predicted rewards plus the terminal min-Q."""
    rewards, heads = rollout(model, z, actions, discount)
    return rewards + heads.min(dim=1, keepdim=True).values


def policy_sequences(model: TOLD, z: torch.Tensor, horizon: int) -> torch.Tensor:
    """The policy's own action sequence [H, N, act] from latents [N, d], rolled out in `model` (the planner's
    pi trajectories, without their exploration noise)."""
    actions = []
    for _ in range(horizon):
        actions.append(model.pi_action(z))
        z, _ = model.next(z, actions[-1])
    return torch.stack(actions)


def centered(values: torch.Tensor, states: int) -> torch.Tensor:
    """Values [states * K, 1] as [states, K] minus each state's mean over its K candidates."""
    values = values.view(states, -1)
    return values - values.mean(1, keepdim=True)


def twin_gap(heads: torch.Tensor) -> torch.Tensor:
    """Q1 - Q2 from terminal head values [N, 2]."""
    return heads[:, 0] - heads[:, 1]


@dataclass(frozen=True)
class SurrogateWeights:
    """Weights of the surrogate's terms besides the centered value error (weight 1)."""

    pi: float = 0.1
    twin: float = 1.0
    reward: float = 0.0
    choice: float = 10.0
    proposal: float = 0.0


@dataclass(frozen=True)
class DenseTargets:
    """What the dense model gives on one batch, which the pruned model is compared against."""

    start: torch.Tensor
    sequences: torch.Tensor
    value: torch.Tensor
    reward: torch.Tensor
    twin: torch.Tensor
    pi: torch.Tensor
    proposal: torch.Tensor | None


class PlannerSurrogate:
    """`surrogate(masked, step)`: the loss of a (soft-masked) model on batch `step` against the dense agent.

    `batch(step)` picks the visited states and candidate sequences of a step; the dense side of each batch is
    computed once and cached. `rollout` imagines action sequences in a model, as the planner's value does.
    """

    def __init__(self, dense: TOLD, obs: torch.Tensor, batch: Batch, *, candidates: int, horizon: int,
                 discount: float, temperature: float, weights: SurrogateWeights, rollout: Rollout = imagine) -> None:
        self.dense, self.obs, self.batch = dense, obs, batch
        self.candidates, self.horizon = candidates, horizon
        self.discount, self.temperature = discount, temperature
        self.weights, self.rollout = weights, rollout
        self.frozen = copy.deepcopy(dense).requires_grad_(False) if weights.proposal else dense
        """the dense model that values the pruned policy's proposals: a copy of `dense` with gradients off"""
        self._cache: dict[int, DenseTargets] = {}

    def __repr__(self) -> str:
        return f"PlannerSurrogate(candidates={self.candidates}, horizon={self.horizon}, {self.weights})"

    def targets(self, step: int) -> DenseTargets:
        """The dense model's values, rewards, twin gaps, policy actions (and proposals) on batch `step`."""
        if step not in self._cache:
            start, sequences = self.batch(step)
            dense = self.dense
            with torch.no_grad():
                z = dense.h(self.obs[start]).repeat_interleave(self.candidates, dim=0)
                rewards, heads = self.rollout(dense, z, sequences, self.discount)
                value = centered(rewards + heads.min(dim=1, keepdim=True).values, len(start))
                reward = centered(rewards, len(start))
                z0 = dense.h(self.obs[start])
                pi = dense.pi_action(z0)
                proposal = (planner_value(dense, z0, policy_sequences(dense, z0, self.horizon), self.discount,
                                          self.rollout) if self.weights.proposal else None)
            self._cache[step] = DenseTargets(start, sequences, value, reward, twin_gap(heads), pi, proposal)
        return self._cache[step]

    def choice_error(self, value: torch.Tensor, dense_value: torch.Tensor) -> torch.Tensor:
        """KL(pruned || dense) of the planner's weights exp(temperature * value) over each state's candidates:
        how far the pruned planner would prefer sequences the dense planner does not."""
        pruned_log_w = torch.log_softmax(self.temperature * value, dim=1)
        dense_log_w = torch.log_softmax(self.temperature * dense_value, dim=1)
        return (pruned_log_w.exp() * (pruned_log_w - dense_log_w)).sum(1).mean()

    def __call__(self, masked: nn.Module, step: int) -> torch.Tensor:
        """The weighted sum of the terms (module docstring) for `masked` on batch `step`."""
        dense, w = self.targets(step), self.weights
        states = len(dense.start)
        z = masked.h(self.obs[dense.start])
        rewards, heads = self.rollout(masked, z.repeat_interleave(self.candidates, dim=0), dense.sequences, self.discount)
        value = centered(rewards + heads.min(dim=1, keepdim=True).values, states)
        spread = dense.value.pow(2).mean().clamp_min(1e-8)
        value_err = (value - dense.value).pow(2).mean() / spread
        twin_err = (twin_gap(heads) - dense.twin).pow(2).mean() / spread
        reward_err = ((centered(rewards, states) - dense.reward).pow(2).mean()
                      / dense.reward.pow(2).mean().clamp_min(1e-8))
        pi_err = (masked.pi_action(z) - dense.pi).pow(2).mean()
        loss = (value_err + w.twin * twin_err + w.reward * reward_err
                + w.pi * pi_err + w.choice * self.choice_error(value, dense.value))
        if w.proposal:
            frozen = self.frozen
            proposal = planner_value(frozen, frozen.h(self.obs[dense.start]),
                                     policy_sequences(masked, z, self.horizon), self.discount, self.rollout)
            loss = loss + w.proposal * (dense.proposal - proposal).clamp_min(0).pow(2).mean() / spread
        return loss
