"""The TD-MPC agent: TOLD model, EMA target, optimisers, planning and the TD-learning update."""
from __future__ import annotations

import copy

import numpy as np
import torch

from agents.tdmpc.buffer import Batch, ReplayBuffer
from agents.tdmpc.config import TDMPCConfig
from agents.tdmpc.model import TOLD, compute_precision
from agents.tdmpc.planner import MPPIPlanner, NoiseSource

UPDATE_MODES = ("auto", "eager", "compile")
"""How an update runs: `eager` op by op; `compile` the model and policy losses, forward and backward, through
`torch.compile` (`reduce-overhead` on CUDA: captured as CUDA graphs and replayed) with a fused Adam on CUDA;
`auto` is `compile` on CUDA and `eager` on the CPU (docs/TDMPC_EXECUTION.md has the measurements)."""


def resolve_update_mode(mode: str, device: torch.device) -> str:
    """`eager` or `compile`: what `mode` (one of UPDATE_MODES) means on `device`."""
    if mode not in UPDATE_MODES:
        raise ValueError(f"update mode must be one of {', '.join(UPDATE_MODES)}, got {mode!r}")
    if mode == "auto":
        return "compile" if device.type == "cuda" else "eager"
    return mode


class TDMPC:
    """TD-MPC (Hansen et al., 2022) on a CPU or GPU: plans with MPPI, learns TOLD by TD-learning."""

    def __init__(self, cfg: TDMPCConfig, obs_dim: int, act_dim: int, device: str | torch.device = "cpu",
                 plan_mode: str = "auto", update_mode: str = "auto") -> None:
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        self.device = torch.device(device)
        self.update_mode = resolve_update_mode(update_mode, self.device)
        self.model = TOLD(cfg, obs_dim, act_dim).to(self.device)
        self.reset_training_state()
        self.planner = MPPIPlanner(cfg, act_dim, plan_mode)
        self.step = 0
        """Agent steps trained so far (sets the planner's horizon and std schedules)."""
        self._rho = (cfg.rho ** torch.arange(cfg.horizon + 1, dtype=torch.float32).view(-1, 1, 1)).to(self.device)

    def reset_training_state(self, target: TOLD | None = None) -> None:
        """Target = `target` (default: a copy of the model), fresh optimisers. Call after changing the
        model's layers (e.g. physical pruning) before training it further."""
        self.target = (copy.deepcopy(self.model) if target is None else target).requires_grad_(False)
        # Each target parameter follows the model's tensor of the same name: the parameter itself, or the
        # effective (masked) weight of a layer pruned with torch.nn.utils.prune.
        self._ema_sources = [(self.model.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2])
                             for name, _ in self.target.named_parameters()]
        self._pi_params = list(self.model.pi.parameters())
        pi_ids = {id(p) for p in self._pi_params}
        self._model_params = [p for p in self.model.parameters() if id(p) not in pi_ids]
        self._q_params = [*self.model.q1.parameters(), *self.model.q2.parameters()]
        fused = {"fused": True} if self.update_mode == "compile" and self.device.type == "cuda" else {}
        self.optim = torch.optim.Adam(self._model_params, lr=self.cfg.lr, **fused)
        self.pi_optim = torch.optim.Adam(self._pi_params, lr=self.cfg.lr, **fused)
        self._model_losses, self._policy_loss = self.losses, self.policy_loss
        if self.update_mode == "compile":
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._model_losses = torch.compile(self.losses, dynamic=False, mode=mode)
            self._policy_loss = torch.compile(self.policy_loss, dynamic=False, mode=mode)

    def __repr__(self) -> str:
        return f"TDMPC({self.model!r}, {self.planner!r})"

    def plan(self, obs: np.ndarray | torch.Tensor, eval_mode: bool = False, step: int = 0,
             t0: bool | torch.Tensor = True, noise: NoiseSource | None = None) -> torch.Tensor:
        """Action [act] for one observation [obs], or actions [E, act] for E episodes' observations [E, obs],
        on the agent's device: uniform random during seed steps (unless eval_mode), else MPPI."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32).to(self.device)
        if step < self.cfg.seed_steps and not eval_mode:
            return (torch.rand(*obs_t.shape[:-1], self.act_dim) * 2 - 1).to(self.device)
        return self.planner.plan(self.model, obs_t, step, eval_mode, t0, noise)

    def act(self, obs: np.ndarray, eval_mode: bool = True, step: int = 0, t0: bool | torch.Tensor = True,
            noise: NoiseSource | None = None) -> np.ndarray:
        """`plan` as a float32 numpy action (what an environment takes), [act] or [E, act]."""
        return self.plan(obs, eval_mode, step, t0, noise).cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def _td_target(self, next_obs: torch.Tensor, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """reward + discount * min(Q1, Q2) of the next state, without the value term after a terminal step."""
        next_z = self.model.h(next_obs)
        q1, q2 = self.target.Q(next_z, self.model.pi_action(next_z, self.cfg.min_std))
        value = self.cfg.discount * torch.minimum(q1, q2)
        return reward + value * (1 - done)

    def losses(self, b: Batch) -> dict[str, torch.Tensor]:
        """TD-MPC's model losses on a batch, per slice ([B, 1]), plus the latents of the rollout.

        Keys: consistency, reward, value, priority, total, weighted (scalar) and zs ([H+1, B, latent]). Steps
        after a terminal one (`b.alive` = 0) count nothing.
        """
        cfg, rho = self.cfg, self._rho[: self.cfg.horizon] * b.alive[: self.cfg.horizon]
        with compute_precision(cfg.precision, self.device.type):
            with torch.no_grad():
                next_z = self.target.h(b.next_obs).float()
                td_target = self._td_target(b.next_obs, b.reward, b.done).float()
            z = self.model.h(b.obs)
            zs, xs = [z], []
            for a in b.action:
                xs.append(torch.cat([z, a], dim=-1))
                z = self.model.dynamics(xs[-1])
                zs.append(z)
            x = torch.stack(xs)
            q1, q2, reward_pred = (f(x).float() for f in (self.model.q1, self.model.q2, self.model.reward))
        zs = [z.float() for z in zs]
        out = {
            "consistency": (rho * (torch.stack(zs[1:]) - next_z).pow(2).mean(-1, keepdim=True)).sum(0),
            "reward": (rho * (reward_pred - b.reward).pow(2)).sum(0),
            "value": (rho * ((q1 - td_target).pow(2) + (q2 - td_target).pow(2))).sum(0),
            "priority": (rho * ((q1 - td_target).abs() + (q2 - td_target).abs())).sum(0),
        }
        out["total"] = (cfg.consistency_coef * out["consistency"].clamp(max=1e4)
                        + cfg.reward_coef * out["reward"].clamp(max=1e4)
                        + cfg.value_coef * out["value"].clamp(max=1e4))
        out["weighted"] = (out["total"].squeeze(1) * b.weights).mean()
        out["zs"] = torch.stack(zs)
        return out

    def update(self, buffer: ReplayBuffer, step: int) -> dict[str, float]:
        """One gradient step of model and policy on a prioritized batch; returns the losses (one host
        synchronisation per update)."""
        if self.update_mode == "compile" and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        b = buffer.sample(self.cfg.batch_size)
        loss = self._model_losses(b)
        self.optim.zero_grad(set_to_none=True)
        (loss["weighted"] / self.cfg.horizon).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self._model_params, self.cfg.grad_clip_norm)
        self.optim.step()
        buffer.update_priorities(b.idxs, loss["priority"].detach().clamp(max=1e4))
        pi_loss = self._update_pi(loss["zs"].detach(), b.alive)
        if step % self.cfg.update_freq == 0:
            self.ema()
        names = ("consistency_loss", "reward_loss", "value_loss", "total_loss", "pi_loss", "weighted_loss",
                 "grad_norm")
        values = [loss[k].detach().mean() for k in ("consistency", "reward", "value", "total")]
        values += [pi_loss.detach(), loss["weighted"].detach(), grad_norm.detach().float()]
        return dict(zip(names, torch.stack(values).tolist()))

    def policy_loss(self, zs: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """Negative min(Q1, Q2) at pi's actions along the latent rollout zs, rho-discounted, up to the
        terminal state (`alive`)."""
        with compute_precision(self.cfg.precision, self.device.type):
            a = self.model.pi_action(zs, self.cfg.min_std)
            q = torch.minimum(*self.model.Q(zs, a)).float()
        return -(self._rho[: zs.shape[0]] * alive * q).mean(dim=(1, 2)).sum()

    def _update_pi(self, zs: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """Policy step on the (detached) latent rollout; Q is held fixed. Returns the loss."""
        for p in self._q_params:
            p.requires_grad_(False)
        loss = self._policy_loss(zs, alive)
        self.pi_optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self._pi_params, self.cfg.grad_clip_norm)
        self.pi_optim.step()
        for p in self._q_params:
            p.requires_grad_(True)
        return loss

    @torch.no_grad()
    def ema(self) -> None:
        """Move the target network towards the model by tau."""
        sources = [getattr(module, attr) for module, attr in self._ema_sources]
        torch._foreach_lerp_(list(self.target.parameters()), sources, self.cfg.tau)

    def state_dict(self) -> dict:
        """Model, target, both optimisers and the step counter."""
        return {"step": self.step, "model": self.model.state_dict(), "target": self.target.state_dict(),
                "optim": self.optim.state_dict(), "pi_optim": self.pi_optim.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of `state_dict`."""
        self.model.load_state_dict(state["model"])
        self.target.load_state_dict(state["target"])
        self.optim.load_state_dict(state["optim"])
        self.pi_optim.load_state_dict(state["pi_optim"])
        self.step = int(state["step"])
