"""TOLD, TD-MPC's task-oriented latent dynamics model, written with flat layers for pruning."""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from agents.device import native_bf16
from agents.tdmpc.config import TDMPCConfig

COMPONENTS: dict[str, str] = {name: name for name in ("encoder", "dynamics", "reward", "pi", "q1", "q2")}
"""Component name -> child module name of `TOLD`."""


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear -> ELU -> Linear -> ELU -> Linear, each activation its own module."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                         nn.Linear(hidden, out_dim))


def q_mlp(in_dim: int, hidden: int) -> nn.Sequential:
    """Linear -> LayerNorm -> Tanh -> Linear -> ELU -> Linear(1), TD-MPC's Q network."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.Tanh(),
                         nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, 1))


def truncated_noise(mu: torch.Tensor, std: float, clip: float = 0.3, eps: float = 1e-6,
                    noise: torch.Tensor | None = None) -> torch.Tensor:
    """mu plus clipped Gaussian noise (standard normal `noise`, drawn here when None), kept inside (-1, 1)
    with a straight-through clamp."""
    x = mu + ((torch.randn_like(mu) if noise is None else noise) * std).clamp(-clip, clip)
    return x - x.detach() + x.detach().clamp(-1 + eps, 1 - eps)


@dataclass
class Imagination:
    """What TOLD predicts along action sequences: see `TOLD.imagine`."""

    rewards: torch.Tensor
    """[N, 1] discounted sum of the predicted rewards."""
    heads: torch.Tensor
    """[N, 2] terminal Q1 and Q2 at the policy's action in the final latent, times discount ** H."""
    latent: torch.Tensor
    """[N, latent] final latent."""

    def value(self) -> torch.Tensor:
        """[N, 1] MPPI's estimate: discounted rewards plus the discounted terminal min(Q1, Q2)."""
        return self.rewards + self.heads.min(dim=1, keepdim=True).values


class TOLD(nn.Module):
    """Encoder h, latent dynamics d, reward R, policy pi and twin Q networks of TD-MPC."""

    def __init__(self, cfg: TDMPCConfig, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        z, m = cfg.latent_dim, cfg.mlp_dim
        self.encoder = nn.Sequential(nn.Linear(obs_dim, cfg.enc_dim), nn.ELU(), nn.Linear(cfg.enc_dim, z))
        self.dynamics = mlp(z + act_dim, m, z)
        self.reward = mlp(z + act_dim, m, 1)
        self.pi = mlp(z, m, act_dim)
        self.q1, self.q2 = q_mlp(z + act_dim, m), q_mlp(z + act_dim, m)
        self.apply(_orthogonal_init)
        for head in (self.reward, self.q1, self.q2):
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def h(self, obs: torch.Tensor) -> torch.Tensor:
        """Encode observations into latents."""
        return self.encoder(obs)

    def next(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next latent and one-step reward."""
        x = torch.cat([z, a], dim=-1)
        return self.dynamics(x), self.reward(x)

    def pi_action(self, z: torch.Tensor, std: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Policy action tanh(pi(z)), with clipped Gaussian noise when std > 0 (standard normal `noise` of the
        action's shape and dtype, drawn from torch's generator when None)."""
        mu = torch.tanh(self.pi(z))
        return truncated_noise(mu, std, noise=noise) if std > 0 else mu

    def imagine(self, z: torch.Tensor, actions: torch.Tensor, discount: float, terminal_std: float = 0.0,
                terminal_noise: torch.Tensor | None = None) -> Imagination:
        """Roll latents [N, latent] through action sequences [H, N, act]: discounted predicted rewards, the
        final latent and the discounted twin Q values there at the policy's action (`pi_action` with
        `terminal_std` and `terminal_noise`: the planner adds the policy noise, the surrogate does not).
        Rewards and values are fp32 whatever the compute precision."""
        rewards, scale = torch.zeros(z.shape[0], 1, device=z.device), 1.0
        for a in actions:
            z, r = self.next(z, a)
            rewards = rewards + scale * r.float()
            scale *= discount
        q1, q2 = self.Q(z, self.pi_action(z, terminal_std, terminal_noise))
        return Imagination(rewards, scale * torch.cat([q1, q2], dim=1).float(), z)

    def Q(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both state-action values."""
        x = torch.cat([z, a], dim=-1)
        return self.q1(x), self.q2(x)

    def widths(self) -> dict[str, list[int]]:
        """Output width of every Linear, per component."""
        return {name: [m.out_features for m in getattr(self, name) if isinstance(m, nn.Linear)]
                for name in COMPONENTS}

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.parameters())
        enc = self.encoder[0].out_features
        return (f"TOLD(obs={self.obs_dim}, act={self.act_dim}, enc={enc}, "
                f"latent={self.encoder[-1].out_features}, mlp={self.dynamics[0].out_features}, "
                f"params={params:,})")


def warn_if_emulated_bf16(precision: str, what: str) -> None:
    """Warn once per call site that `what` runs in bf16 on a CPU that only emulates it."""
    if precision == "bf16" and not native_bf16():
        warnings.warn(f"{what} runs in bf16 (bfloat16 autocast), but this CPU has no native bf16 "
                      "(AVX512-BF16 or AMX): its Linears run as fp32 matmuls of bf16-rounded values (the same "
                      "results up to the order of sums), slower than native bf16, so wall times "
                      "(search_seconds, cell_seconds, latency_ms_*) are not comparable with those measured on "
                      "a CPU that has it", RuntimeWarning, stacklevel=3)


class Bf16LinearInFp32(TorchFunctionMode):
    """Runs bfloat16-autocast Linears as fp32 matmuls of bf16-rounded operands, rounded back to bf16.

    That is what a native bf16 GEMM computes (bf16 operands, fp32 accumulation, bf16 result), up to the
    order of the sums; on CPUs without native bf16 it is several times faster than torch's emulated GEMM.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.linear:
            return func(*args, **kwargs)
        x, weight, *rest = args
        bias = rest[0] if rest else kwargs.get("bias")
        with torch.autocast("cpu", enabled=False):
            out = F.linear(_bf16_rounded(x), _bf16_rounded(weight), None if bias is None else _bf16_rounded(bias))
        return out.to(torch.bfloat16)


def _bf16_rounded(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).float()


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype of TOLD's outputs under `compute_precision(precision)`."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def compute_precision(precision: str, device_type: str = "cpu") -> contextlib.AbstractContextManager:
    """Context in which TOLD runs on `device_type`: nothing for fp32, bfloat16 autocast for bf16 (on CPUs
    without native bf16 with its Linears as fp32 matmuls of bf16 values, see `Bf16LinearInFp32`)."""
    if precision != "bf16":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    # No cast cache off the CPU: CUDA graphs replay the casts of a captured plan instead.
    stack.enter_context(torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=device_type == "cpu"))
    if device_type == "cpu" and not native_bf16():
        stack.enter_context(Bf16LinearInFp32())
    return stack


def _orthogonal_init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.orthogonal_(m.weight)
        nn.init.zeros_(m.bias)


def output_layers(model: TOLD) -> list[str]:
    """Qualified names of the last Linear of the heads (reward, pi, q1, q2): never pruned."""
    return [f"{name}.{len(getattr(model, name)) - 1}" for name in ("reward", "pi", "q1", "q2")]


def trace_forward(model: TOLD, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Every path the agent uses: encode `inputs["obs"]`, then two latent steps with `inputs["action"]`.

    Each step calls pi, q1, q2, dynamics and reward, so a dependency graph traced through
    this function couples the encoder output, the dynamics output and every head input.
    """
    z, a = model.h(inputs["obs"]), inputs["action"]
    outputs: list[torch.Tensor] = []
    for _ in range(2):
        action = model.pi_action(z)
        q1, q2 = model.Q(z, a)
        z, r = model.next(z, a)
        outputs += [action, q1, q2, r, z]
    return tuple(outputs)
