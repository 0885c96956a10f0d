"""Use cases `tdmpc-<task>`: a shipped TD-MPC agent, scored by the planner's episode return.

The pruning problem's surrogate is `PlannerSurrogate` (surrogate.py), on states the dense agent visits and
candidate action sequences around the planner's own actions there.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.tdmpc import COMPONENTS, TDMPC, TOLD, load_agent, output_layers, trace_forward
from agents.tdmpc.buffer import ReplayBuffer
from agents.tdmpc.checkpoint import make_agent_env
from agents.tdmpc.train import collect_episode, episode_limit
from agents.tdmpc.planner import INITIAL_STD, planning_horizon
from agents.tdmpc.evaluate import LockstepEvaluator, check_evaluator, eval_episode, evaluate
from benchmarks.usecases.base import FineTuned, PruningTargets, UseCase, register_usecase, require_positive
from benchmarks.usecases.tdmpc.surrogate import PlannerSurrogate, SurrogateWeights
from envs import is_known_task
from envs.registry import action_repeat_of
from pruning import PruneResult, PruningProblem, count_macs, refresh_masked_weights, replay_history, weight_masks

EVAL_SEED = 10_000
"""Evaluation episodes of cell seed s reset the env with EVAL_SEED + 100 s + i (never used in training)."""
CALIB_SEED = 20_000
"""Episodes whose visited states feed the surrogate and the grid's validation returns."""
FINETUNE_SEED = 30_000
"""Fine-tuning episode i of cell seed s resets the env with FINETUNE_SEED + 1000 s + i; the dense episodes that
seed the replay buffer with FINETUNE_SEED - 1 - i."""
REPLAY_CHOICES = ("dense", "empty")
"""What the replay buffer of a fine-tuning run starts with (option `finetune_replay`)."""
REGRET_STATES = 200
"""About this many visited states (evenly spaced) score the planner regret of `ctrlprune ablate`."""


def default_checkpoint(task: str) -> Path:
    return Path(f"checkpoints/tdmpc/{task}-seed1/agent.pt")


def train_command(task: str) -> str:
    return f"ctrlprune train tdmpc --task {task} --seed 1 --steps 100000 --out checkpoints/tdmpc/{task}-seed1"


@dataclass
class Visits:
    """States the dense agent visits, with the actions its planner took there (episode-ordered)."""

    obs: torch.Tensor
    actions: torch.Tensor


@register_usecase("tdmpc", prefix=True)
class TDMPCUseCase(UseCase):
    """A TD-MPC agent on a dm_control/gymnasium task.

    Options: `episodes` (evaluation episodes per cell, default 10), `grid_episodes` (episodes per grid
    candidate, default 2), `calib_episodes` (dense episodes whose states feed the surrogate, default 2),
    `states` (visited states per surrogate batch, default 64), `candidates` (action sequences per state,
    default 16), `noise` (largest std of the candidates' noise around the planner's actions, default the
    planner's first-iteration std 2), `pi_weight` (weight of the policy term, default 0.1), `twin_weight`
    (weight of the twin-gap term, default 1), `reward_weight` (weight of the predicted-reward term in its
    own units, default 0: off), `choice_weight` (weight of the planner-choice term, default 10),
    `proposal_weight` (weight of the policy-proposal term, default 0: off): how much worse, by the dense
    model's own estimate, the pruned policy's rollouts are than the dense policy's (the planner's pi
    trajectories), `evaluator` (how evaluation, calibration and grid episodes run: `lockstep`, default, all
    episodes in one batched plan per step with per-episode noise; `legacy`, one after another with torch's
    global noise, the evaluation that made the committed cells; `sequential`, the lock-step episodes and noise
    one after another; docs/TDMPC_EXECUTION.md), `finetune_replay` (what fine-tuning's replay buffer starts with: `dense`,
    default, `finetune_replay_episodes` episodes of the dense agent's own (planned with exploration noise, as
    it collected its training data); `empty`, only the pruned agent's own episodes; docs/FINETUNING.md) and
    `finetune_replay_episodes` (default 10).
    """

    metric_name = "return"
    latent_layer = "encoder.2"
    targets = PruningTargets(method="gradient", rival="tp-magnitude", slower="grid",
                             levels=tuple(round(0.1 * i, 1) for i in range(1, 10)), floor_level=0.6)
    code_versions = {"gradient": "5"}
    """docs/METHOD.md lists what each version changed."""
    method_defaults = {
        # The surrogate distils the dense agent, so its gradient vanishes at the dense model: Taylor ranking
        # is undefined there and channels are ranked by magnitude.
        "grid": {"importance": "magnitude"},
        "grid-group": {"importance": "magnitude"},
        # A greedy start (finds the idle channels of reward and policy layers) and one with the latent whole
        # (pruning the latent is what breaks TD-MPC), a 50-step probe each; docs/METHOD.md has the measurements.
        "gradient": {"importance": "magnitude", "starts": ["greedy", "keep-inter"], "greedy_chunks": 16,
                     "lazy_greedy": True, "probe_steps": 50},
    }

    def __init__(self, task: str, checkpoint: str = "", episodes: int = 10, grid_episodes: int = 2,
                 calib_episodes: int = 2, states: int = 64, candidates: int = 16, pi_weight: float = 0.1,
                 twin_weight: float = 1.0, reward_weight: float = 0.0, noise: float = INITIAL_STD,
                 choice_weight: float = 10.0, proposal_weight: float = 0.0, evaluator: str = "lockstep",
                 finetune_replay: str = "dense", finetune_replay_episodes: int = 10) -> None:
        require_positive(f"model 'tdmpc-{task}'", episodes=episodes, grid_episodes=grid_episodes,
                         calib_episodes=calib_episodes, states=states, candidates=candidates,
                         finetune_replay_episodes=finetune_replay_episodes)
        if finetune_replay not in REPLAY_CHOICES:
            raise ValueError(f"model 'tdmpc-{task}' option 'finetune_replay' must be one of {list(REPLAY_CHOICES)}, "
                             f"got {finetune_replay!r}")
        self.finetune_replay, self.finetune_replay_episodes = finetune_replay, finetune_replay_episodes
        self._dense_episodes: list[tuple] | None = None
        super().__init__(checkpoint or str(default_checkpoint(task)))
        self.task, self.name = task, f"tdmpc-{task}"
        self.episodes, self.grid_episodes, self.calib_episodes = episodes, grid_episodes, calib_episodes
        self.states, self.candidates = states, candidates
        self.weights = SurrogateWeights(pi=pi_weight, twin=twin_weight, reward=reward_weight, choice=choice_weight,
                                        proposal=proposal_weight)
        self.noise = noise
        self._env: gym.Env | None = None
        if not is_known_task(task):
            make_agent_env(Path(self.checkpoint), task)  # raises, naming the plugins the checkpoint was trained with
        self.evaluator = check_evaluator(evaluator)
        self._lockstep = LockstepEvaluator(lambda: make_agent_env(Path(self.checkpoint), task),
                                           lockstep=evaluator != "sequential")
        self._agent: TDMPC | None = None
        self._visits: Visits | None = None
        self._dense_plan_values: dict[int, torch.Tensor] = {}

    @property
    def env(self) -> gym.Env:
        """The task as the checkpoint was trained on it (recorded action repeat; plugins named if missing)."""
        if self._env is None:
            self._env = make_agent_env(Path(self.checkpoint), self.task)
        return self._env

    # -- the dense agent and the pruned agents -------------------------------------------------------
    def agent(self) -> TDMPC:
        if self._agent is None:
            if not Path(self.checkpoint).is_file():
                raise FileNotFoundError(f"no TD-MPC agent for {self.task} at {self.checkpoint}; train one with: "
                                        f"{train_command(self.task)}")
            self._agent = load_agent(Path(self.checkpoint), task=self.task)
        return self._agent

    def load(self) -> nn.Module:
        return self.agent().model.eval()

    def recorded_settings(self) -> dict[str, Any]:
        """The evaluator that scored the row."""
        return {"evaluator": self.evaluator}

    def set_device(self, device: torch.device) -> None:
        """Plan (evaluation, calibration rollouts, grid scores, latency) on `device`; the dense model, the
        pruning search and its surrogate stay on the CPU."""
        self.device = device

    def wrap(self, model: TOLD, device: torch.device | None = None) -> TDMPC:
        """An agent that plans with `model` (the dense agent's config, schedules and step) on `device` (default
        the use case's; a copy of `model` where that is not the CPU)."""
        dense, device = self.agent(), self.device if device is None else device
        agent = copy.copy(dense)
        agent.model = (model if device.type == "cpu" else copy.deepcopy(model).to(device)).eval()
        agent.device = device
        agent.planner = type(dense.planner)(dense.cfg, dense.act_dim)
        return agent

    def _returns(self, model: TOLD, episodes: int, seed: int) -> tuple[float, float]:
        """Mean and std of the planner's return over `episodes` episodes from env seed `seed` on, with the
        use case's evaluator."""
        if self.evaluator == "legacy":
            mean, std, _ = evaluate(self.wrap(model), self.env, episodes, seed)
            return mean, std
        result = self._lockstep.run(self.wrap(model), episodes, seed)
        return result.mean, result.std

    def pruned_agent(self, result: PruneResult) -> TDMPC:
        """A trainable agent around a pruning result, with fresh optimisers: its target network is the dense
        target pruned at the same channels (torch-pruning history replayed, or the same masks applied)."""
        agent = self.wrap(result.model, torch.device("cpu"))
        dense_target = self.agent().target
        if result.history:
            example = {"obs": self.visits().obs[:4], "action": self.visits().actions[:4]}
            target = replay_on_target(dense_target, result.history, example, result.replaced)
        else:
            target = masked_like(dense_target, result.model)
        agent.reset_training_state(target)
        return agent

    # -- fine-tuning -----------------------------------------------------------------------------------
    def finetune(self, model: nn.Module, result: PruneResult | None, steps: int, eval_at: list[int],
                 seed: int) -> FineTuned:
        """TD-MPC training of the pruned agent (`pruned_agent`: pruned target, fresh optimisers; the dense agent
        copied when `result` is None) for `steps` env steps: one update per agent step collected, the same
        losses, and the agent's step held at the dense agent's, so the planner's horizon and noise schedules
        keep the values they ended training with. Episodes are collected on a training env of their own; the
        replay starts as `finetune_replay` says. The return is taken after each of `eval_at` env steps."""
        agent = self.pruned_agent(result) if result is not None else self._dense_copy(model)
        env = make_agent_env(Path(self.checkpoint), self.task)
        repeat, cfg = action_repeat_of(env), agent.cfg
        seeded = self.dense_episodes() if self.finetune_replay == "dense" else []
        updates = -(-steps // repeat)
        capacity = sum(len(episode[1]) for episode in seeded) + updates + 2 * episode_limit(env)
        buffer = ReplayBuffer(env.observation_space.shape[0], agent.act_dim, min(capacity, cfg.max_buffer_size),
                              cfg.horizon, cfg.per_alpha, cfg.per_beta)
        for episode in seeded:
            buffer.add(*episode)
        points = {-(-point // repeat): point for point in eval_at}
        collected = episode = 0
        curve = []
        for update in range(updates):
            while collected <= update:
                obs, actions, rewards, terminated = collect_episode(env, agent, FINETUNE_SEED + 1000 * seed + episode, [])
                buffer.add(obs, actions, rewards, terminated)
                collected, episode = collected + len(actions), episode + 1
            agent.update(buffer, update)
            if update + 1 in points:
                curve.append((points[update + 1], self.evaluate(refresh_masked_weights(agent.model), seed)[0]))
        return FineTuned(refresh_masked_weights(agent.model), curve)

    def _dense_copy(self, model: TOLD) -> TDMPC:
        """A trainable copy of the dense agent (its own target, fresh optimisers)."""
        agent = self.wrap(copy.deepcopy(model), torch.device("cpu"))
        agent.reset_training_state(copy.deepcopy(self.agent().target))
        return agent

    def dense_episodes(self) -> list[tuple]:
        """`finetune_replay_episodes` training episodes of the dense agent (obs, actions, rewards, terminated),
        planned with exploration noise at its final step (cached; the same in every cell)."""
        if self._dense_episodes is None:
            agent, env = self.wrap(self.load(), torch.device("cpu")), make_agent_env(Path(self.checkpoint), self.task)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(FINETUNE_SEED)
                self._dense_episodes = [collect_episode(env, agent, FINETUNE_SEED - 1 - i, [])
                                        for i in range(self.finetune_replay_episodes)]
        return self._dense_episodes

    # -- data ------------------------------------------------------------------------------------------
    def visits(self) -> Visits:
        """States and planner actions of `calib_episodes` dense episodes (cached)."""
        if self._visits is None and self.evaluator != "legacy":
            run = self._lockstep.run(self.wrap(self.load()), self.calib_episodes, CALIB_SEED, record=True)
            self._visits = Visits(torch.as_tensor(np.concatenate(run.observations)),
                                  torch.as_tensor(np.concatenate(run.actions)))
        if self._visits is None:
            agent, obs, actions = self.wrap(self.load()), [], []
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(CALIB_SEED)
                for i in range(self.calib_episodes):
                    for o, a, _ in eval_episode(agent, self.env, CALIB_SEED + i, agent.step):
                        obs.append(o)
                        actions.append(a)
            self._visits = Visits(torch.as_tensor(np.array(obs), dtype=torch.float32),
                                  torch.as_tensor(np.array(actions), dtype=torch.float32))
        return self._visits

    def _sequences(self, start: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Candidate action sequences [H, B*K, act] around the planner's own actions from each start: K noise
        levels from 0 (the actions taken) to `noise` (the spread of the planner's first sampling iteration)."""
        v, horizon = self.visits(), planning_horizon(self.agent().cfg, self.agent().step)
        idx = (start.unsqueeze(0) + torch.arange(horizon).unsqueeze(1)).clamp(max=len(v.actions) - 1)
        taken = v.actions[idx].repeat_interleave(self.candidates, dim=1)
        levels = torch.linspace(0, self.noise, self.candidates).repeat(len(start)).view(1, -1, 1)
        return (taken + torch.randn(taken.shape, generator=gen) * levels).clamp(-1, 1)

    def surrogate_batch(self, step: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` of the surrogate for `seed`: start states [states] drawn from the calibration visits and
        their candidate action sequences."""
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        start = torch.randint(len(self.visits().obs), (self.states,), generator=gen)
        return start, self._sequences(start, gen)

    # -- the pruning problem ---------------------------------------------------------------------------
    def problem(self, model: nn.Module, seed: int, latent_prunable: bool) -> PruningProblem:
        visits, agent = self.visits(), self.agent()
        heldout = self.surrogate_batch(-1, seed + 7919)
        surrogate = PlannerSurrogate(
            agent.model, visits.obs, lambda step: heldout if step < 0 else self.surrogate_batch(step % 64, seed),
            candidates=self.candidates, horizon=planning_horizon(agent.cfg, agent.step), discount=agent.cfg.discount,
            temperature=agent.cfg.temperature, weights=self.weights)

        def grid_metric(candidate: nn.Module) -> float:
            return self._returns(candidate, self.grid_episodes, CALIB_SEED + 500 + 100 * seed)[0]

        obs = visits.obs[:4]
        return PruningProblem(
            model=model, components=dict(COMPONENTS),
            output_layers=output_layers(model), example_inputs={"obs": obs, "action": visits.actions[:4]},
            forward_fn=trace_forward, latent_prunable=latent_prunable, metric=grid_metric, surrogate=surrogate,
        )

    # -- evaluation --------------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, seed: int) -> tuple[float, float]:
        return self._returns(model, self.episodes, EVAL_SEED + 100 * seed)

    def latents(self, model: nn.Module, seed: int) -> torch.Tensor:
        with torch.no_grad():
            return model.h(self.visits().obs)

    def latency_inputs(self) -> dict[str, Any]:
        v = self.visits()
        return {"b1": {"obs": v.obs[:1], "action": v.actions[:1]}}

    def macs(self, model: nn.Module) -> int:
        return count_macs(model, self.latency_inputs()["b1"], trace_forward)

    def latency(self, model: nn.Module) -> dict[str, float]:
        """`latency_ms_b1`: one planned action (MPPI, eval mode); `latency_ms_b256`: one value estimate of
        256 candidate sequences (the planner's inner batch)."""
        agent, obs = self.wrap(model), self.visits().obs
        times = []
        for i in range(12):
            begin = time.perf_counter()
            agent.plan(obs[i], eval_mode=True, step=agent.step, t0=i == 0)
            if agent.device.type == "cuda":
                torch.cuda.synchronize(agent.device)
            times.append((time.perf_counter() - begin) * 1e3)
        start, seqs = self.surrogate_batch(0, 0)
        z = model.h(obs[start]).repeat_interleave(self.candidates, dim=0)[:256]
        value_times = []
        with torch.inference_mode():
            for _ in range(12):
                begin = time.perf_counter()
                model.imagine(z, seqs[:, :256], agent.cfg.discount)
                value_times.append((time.perf_counter() - begin) * 1e3)
        return {"latency_ms_b1": float(np.median(times[2:])), "latency_ms_b256": float(np.median(value_times[2:]))}

    def extra_metrics(self, dense: nn.Module, model: nn.Module, seed: int, kept: torch.Tensor | None) -> dict[str, float]:
        """`rollout_error`: relative error of 5-step latent rollouts (planner's actions) against the dense model,
        on the latent coordinates the pruned model kept."""
        v, horizon = self.visits(), 5
        start = torch.arange(0, len(v.obs) - horizon, 7)
        with torch.no_grad():
            zd, zp = dense.h(v.obs[start]), model.h(v.obs[start])
            errors = []
            for t in range(horizon):
                a = v.actions[start + t]
                zd, _ = dense.next(zd, a)
                zp, _ = model.next(zp, a)
                ref = zd if kept is None or zp.shape[1] == zd.shape[1] else zd[:, kept]
                errors.append(((zp - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-8)).mean())
        return {"rollout_error": float(torch.stack(errors).mean())}

    def diagnostics(self, model: nn.Module, seed: int) -> dict[str, float]:
        """`planner_regret`: how much lower the dense critic, min(Q1, Q2), values the first action that the
        pruned model's planner takes than the dense planner's own, averaged over about REGRET_STATES visited
        states, each planned from scratch (the same RNG seed for both planners)."""
        if seed not in self._dense_plan_values:
            self._dense_plan_values[seed] = self._plan_values(self.agent().model, seed)
        return {"planner_regret": float((self._dense_plan_values[seed] - self._plan_values(model, seed)).mean())}

    def _plan_values(self, model: TOLD, seed: int) -> torch.Tensor:
        """The dense critic's min(Q1, Q2) of the first action `model`'s planner takes at each regret state."""
        agent, dense, obs = self.wrap(model), self.agent().model, self.visits().obs
        states = obs[:: max(1, len(obs) // REGRET_STATES)]
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            actions = torch.stack([agent.plan(o, eval_mode=True, step=agent.step, t0=True) for o in states]).cpu()
            return torch.min(*dense.Q(dense.h(states), actions)).squeeze(1)


def masked_like(target: TOLD, masked: nn.Module) -> TOLD:
    """A copy of `target` with the `torch.nn.utils.prune` masks of `masked` multiplied into its weights."""
    target = copy.deepcopy(target)
    with torch.no_grad():
        for layer, mask in weight_masks(dict(masked.named_buffers())).items():
            target.get_submodule(layer).weight.mul_(mask)
    return target


def replay_on_target(target: TOLD, history: list, example_inputs: dict, replaced: dict | None = None) -> TOLD:
    """Apply a pruned model's mean replacement (if any) and torch-pruning history to (a copy of) its target
    network."""
    target = copy.deepcopy(target).requires_grad_(True)  # tracing follows autograd: frozen layers would be missed
    return replay_history(target, history, example_inputs, trace_forward, replaced)
