"""MPPI planning in TOLD's latent space, mixed with policy rollouts (TD-MPC inference), batched over episodes.

One plan takes the observations of E episodes [E, obs] and returns E actions [E, act]; each episode keeps
its own warm start. A plan makes no host synchronisation (no `.item()`, no Python branch on a tensor value),
so on CUDA the whole plan is captured once per shape as a CUDA graph and replayed (`mode="graphs"`).
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch

from agents.tdmpc.config import TDMPCConfig
from agents.tdmpc.model import TOLD, compute_dtype, compute_precision

INITIAL_STD = 2.0
"""Std of the planner's first sampling iteration at every step (and the ceiling of later ones)."""
PLAN_MODES = ("auto", "eager", "graphs", "compile")
"""How a plan runs: `eager` op by op; `graphs` captured once per shape as a CUDA graph and replayed (CUDA
only); `compile` through `torch.compile` (`reduce-overhead` on CUDA; with the global noise source its random
numbers come from the compiler's generator, not torch's eager stream); `auto` is `graphs` on CUDA with the
global noise source and `eager` otherwise (docs/TDMPC_EXECUTION.md)."""


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


class NoiseSource(Protocol):
    """Where a plan's randomness comes from; every tensor it returns has the episodes as leading axis."""

    def normal(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Standard normal noise of `shape` ([E, ...])."""

    def choose(self, probs: torch.Tensor) -> torch.Tensor:
        """One index [E] per row of `probs` [E, K], drawn with those probabilities."""


def inverse_cdf(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Index [E] where `uniform` [E, 1] in [0, 1) falls in the cumulative distribution of each row of `probs`."""
    cdf = probs.cumsum(1)
    return (cdf < uniform * cdf[:, -1:]).sum(1).clamp_(max=probs.shape[1] - 1)


class GlobalNoise:
    """torch's global generator of the plan's device, drawn in the order the one-observation planner always
    drew it: a plan of one observation reproduces the committed cells bit for bit. On CUDA the choice is an
    inverse-CDF draw (capturable); on CPU it is `torch.multinomial`."""

    def normal(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        return torch.randn(shape, dtype=dtype, device=device)

    def choose(self, probs: torch.Tensor) -> torch.Tensor:
        if probs.device.type == "cpu":
            return torch.multinomial(probs, 1).squeeze(1)
        return inverse_cdf(probs, torch.rand(probs.shape[0], 1, device=probs.device))


class EpisodeNoise:
    """One generator per episode: episode e's noise depends only on generator e, so a plan of E observations
    equals E plans of one observation with the same generators, up to float rounding (lock-step evaluation,
    injected noise in tests). Draws are made on the generators' device and moved to the plan's."""

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = list(generators)

    @classmethod
    def seeded(cls, seeds: Sequence[int], device: str | torch.device = "cpu") -> "EpisodeNoise":
        """Fresh generators seeded with `seeds`, one per episode."""
        return cls([torch.Generator(device=device).manual_seed(int(s)) for s in seeds])

    def select(self, episodes: Sequence[int]) -> "EpisodeNoise":
        """The same generators (not copies) of some episodes."""
        return EpisodeNoise([self.generators[e] for e in episodes])

    def _check(self, rows: int) -> None:
        if rows != len(self.generators):
            raise ValueError(f"a plan of {rows} observations needs {rows} episode generators, "
                             f"got {len(self.generators)}")

    def normal(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        self._check(shape[0])
        draws = [torch.randn(shape[1:], dtype=dtype, device=g.device, generator=g) for g in self.generators]
        return torch.stack(draws).to(device)

    def choose(self, probs: torch.Tensor) -> torch.Tensor:
        self._check(probs.shape[0])
        uniform = torch.stack([torch.rand(1, device=g.device, generator=g) for g in self.generators])
        return inverse_cdf(probs, uniform.to(probs.device))


class _CapturedPlan:
    """A function of fixed-shape tensors captured as one CUDA graph: inputs are copied into static buffers,
    the graph is replayed, and copies of the static outputs are returned."""

    def __init__(self, fn: Callable[..., tuple[torch.Tensor, ...]], inputs: tuple[torch.Tensor, ...]) -> None:
        self.inputs = tuple(x.clone() for x in inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm up kernels and allocator outside the capture
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = fn(*self.inputs)

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for static, x in zip(self.inputs, inputs):
            static.copy_(x)
        self.graph.replay()
        return tuple(out.clone() for out in self.outputs)


class MPPIPlanner:
    """Plans one action per episode per call; keeps each episode's last mean to warm-start its next call."""

    def __init__(self, cfg: TDMPCConfig, act_dim: int, mode: str = "auto") -> None:
        if mode not in PLAN_MODES:
            raise ValueError(f"plan mode must be one of {PLAN_MODES}, got {mode!r}")
        self.cfg, self.act_dim, self.mode = cfg, act_dim, mode
        self.num_pi = int(cfg.mixture_coef * cfg.num_samples)
        self._prev_mean: torch.Tensor | None = None
        """[E, cfg.horizon, act] last mean of each episode, zero beyond the horizon it was planned with."""
        self._global_noise = GlobalNoise()
        self._captured: dict[tuple, _CapturedPlan] = {}
        self._compiled: Callable | None = None

    def __repr__(self) -> str:
        c = self.cfg
        return (f"MPPIPlanner(samples={c.num_samples}+{self.num_pi} pi, elites={c.num_elites}, "
                f"iterations={c.iterations}, horizon={c.horizon}, mode={self.mode})")

    def reset(self) -> None:
        """Forget the warm starts (the next plan starts every episode afresh)."""
        self._prev_mean = None

    @torch.inference_mode()
    def plan(self, model: TOLD, obs: torch.Tensor, step: int, eval_mode: bool, t0: bool | torch.Tensor,
             noise: NoiseSource | None = None) -> torch.Tensor:
        """Actions [E, act] in [-1, 1] for observations [E, obs] (one action [act] for one observation [obs]);
        exploration noise unless eval_mode. `t0` (one flag, or one per episode) marks first steps of episodes,
        which start without a warm start; `noise` defaults to torch's global generator (`GlobalNoise`)."""
        single = obs.dim() == 1
        obs = obs.unsqueeze(0) if single else obs
        rows, device = obs.shape[0], obs.device
        first = torch.as_tensor(t0, dtype=torch.bool, device=device).expand(rows)
        prev = self._prev_mean
        if prev is None or prev.shape[0] != rows or prev.device != device:
            prev = torch.zeros(rows, self.cfg.horizon, self.act_dim, device=device)
        horizon, floor = planning_horizon(self.cfg, step), std_floor(self.cfg, step)
        run = self._runner(model, device, horizon, floor, eval_mode, noise)
        action, self._prev_mean = run(obs, first, prev)
        return action[0] if single else action

    def _runner(self, model: TOLD, device: torch.device, horizon: int, floor: float, eval_mode: bool,
                noise: NoiseSource | None) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
        """The plan as a function of (obs, t0, previous means), eager, captured or compiled per `mode`."""
        mode = self.mode
        if mode == "auto":
            mode = "graphs" if device.type == "cuda" and noise is None else "eager"
        if mode == "graphs" and (device.type != "cuda" or noise is not None):
            raise ValueError("plan mode 'graphs' needs a CUDA device and the global noise source")

        def core(obs: torch.Tensor, first: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self._plan(model, obs, first, prev, horizon, floor, eval_mode, noise or self._global_noise)

        if mode == "eager":
            return core
        if mode == "compile":
            if self._compiled is None:
                self._compiled = torch.compile(self._plan, dynamic=False,
                                               mode="reduce-overhead" if device.type == "cuda" else None)
            compiled = self._compiled
            return lambda obs, first, prev: compiled(model, obs, first, prev, horizon, floor, eval_mode,
                                                     noise or self._global_noise)

        def replay(obs: torch.Tensor, first: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            key = (id(model), tuple(obs.shape), horizon, floor, eval_mode)
            if key not in self._captured:
                self._captured[key] = _CapturedPlan(core, (obs, first, prev))
            return self._captured[key](obs, first, prev)

        return replay

    def _plan(self, model: TOLD, obs: torch.Tensor, first: torch.Tensor, prev: torch.Tensor, horizon: int,
              floor: float, eval_mode: bool, noise: NoiseSource) -> tuple[torch.Tensor, torch.Tensor]:
        with compute_precision(self.cfg.precision, obs.device.type):
            return self._mppi(model, obs, first, prev, horizon, floor, eval_mode, noise)

    def _warm_start(self, first: torch.Tensor, prev: torch.Tensor, horizon: int) -> torch.Tensor:
        """Initial means [E, H, act]: each episode's previous mean shifted by one step, zero at first steps."""
        shifted = torch.zeros(prev.shape[0], horizon, self.act_dim, device=prev.device)
        shifted[:, : horizon - 1] = prev[:, 1:horizon]
        return torch.where(first.view(-1, 1, 1), torch.zeros_like(shifted), shifted)

    def _policy_rollouts(self, model: TOLD, z0: torch.Tensor, horizon: int, noise: NoiseSource) -> torch.Tensor:
        """The policy's noisy action sequences [E, H, num_pi, act] from latents [E, latent]."""
        rows, count, dtype = z0.shape[0], self.num_pi, compute_dtype(self.cfg.precision)
        z = z0.unsqueeze(1).expand(rows, count, -1).reshape(rows * count, -1)
        actions = []
        for _ in range(horizon):
            eps = noise.normal((rows, count, self.act_dim), dtype, z.device).view(rows * count, self.act_dim)
            actions.append(model.pi_action(z, self.cfg.min_std, eps))
            z, _ = model.next(z, actions[-1])
        return torch.stack(actions).view(horizon, rows, count, self.act_dim).transpose(0, 1)

    def _mppi(self, model: TOLD, obs: torch.Tensor, first: torch.Tensor, prev: torch.Tensor, horizon: int,
              floor: float, eval_mode: bool, noise: NoiseSource) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, act, device = self.cfg, self.act_dim, obs.device
        rows, samples, elites_n = obs.shape[0], cfg.num_samples, cfg.num_elites
        width = samples + self.num_pi
        z0 = model.h(obs)
        pi_actions = self._policy_rollouts(model, z0, horizon, noise).float() if self.num_pi else None
        z = z0.unsqueeze(1).expand(rows, width, -1).reshape(rows * width, -1)
        mean = self._warm_start(first, prev, horizon)
        std = torch.full((rows, horizon, act), INITIAL_STD, device=device)
        for _ in range(cfg.iterations):
            eps = noise.normal((rows, horizon, samples, act), torch.float32, device)
            actions = (mean.unsqueeze(2) + std.unsqueeze(2) * eps).clamp_(-1, 1)
            if pi_actions is not None:
                actions = torch.cat([actions, pi_actions], dim=2)
            terminal = noise.normal((rows, width, act), compute_dtype(cfg.precision), device).view(rows * width, act)
            sequences = actions.transpose(0, 1).reshape(horizon, rows * width, act)
            value = model.imagine(z, sequences, cfg.discount, cfg.min_std, terminal).value()
            value = value.nan_to_num_(0).view(rows, width)
            elite_value, elite_idx = torch.topk(value, elites_n, dim=1)
            elites = actions.gather(2, elite_idx.view(rows, 1, elites_n, 1).expand(rows, horizon, elites_n, act))
            score = torch.exp(cfg.temperature * (elite_value - elite_value.max(dim=1, keepdim=True).values))
            score /= score.sum(1, keepdim=True)
            w = score.view(rows, 1, elites_n, 1)
            new_mean = (w * elites).sum(2)
            new_std = ((w * (elites - new_mean.unsqueeze(2)) ** 2).sum(2)).sqrt().clamp_(floor, INITIAL_STD)
            mean, std = cfg.momentum * mean + (1 - cfg.momentum) * new_mean, new_std
        choice = noise.choose(score).view(rows, 1, 1).expand(rows, 1, act)
        action = elites[:, 0].gather(1, choice).squeeze(1)
        if not eval_mode:
            action = action + std[:, 0] * noise.normal((rows, act), torch.float32, device)
        kept = torch.zeros_like(prev)
        kept[:, :horizon] = mean
        return action.clamp(-1, 1), kept
