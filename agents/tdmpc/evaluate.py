"""Evaluation episodes of TD-MPC agents: lock-step (K episodes, one batched plan per env step) or one after
another, with per-episode planner noise so that both give the same returns up to float rounding.

`evaluate` stays the evaluation that made the committed cells: one episode after another, planner noise
from torch's global generator. The lock-step evaluator draws other noise, so its returns differ from those;
docs/TDMPC_EXECUTION.md compares them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import gymnasium as gym
import numpy as np

from agents.tdmpc.agent import TDMPC
from agents.tdmpc.planner import EpisodeNoise

EVALUATORS = ("lockstep", "legacy", "sequential")
"""`lockstep` (the default): `LockstepEvaluator` with all episodes in one batch; `legacy`: `evaluate` (global
noise, episodes in turn; the committed cells); `sequential`: the lock-step evaluator, one episode per batch (the
same returns as lockstep up to rounding)."""
STEPPINGS = ("auto", "inline", "async")
"""How lock-step episodes step their environments: `inline` one after another in this process; `async` each in
a process of its own, all at once (gymnasium's AsyncVectorEnv); `auto` is `async` when the agent plans on CUDA
(a plan then costs less than the steps) and `inline` on the CPU, where stepping is a few per cent of the time
(docs/TDMPC_EXECUTION.md)."""


@dataclass
class Evaluation:
    """Returns of evaluation episodes, where their wall time went, and (when recorded) what they visited."""

    returns: list[float]
    plan_seconds: float = 0.0
    """Wall time spent planning (all episodes)."""
    env_seconds: float = 0.0
    """Wall time spent stepping and resetting environments."""
    steps: int = 0
    """Batched plans made (one per agent step of the longest episode of each batch)."""
    observations: list[np.ndarray] = field(default_factory=list)
    """Per episode [T, obs]: the observations planned from (only when recorded)."""
    actions: list[np.ndarray] = field(default_factory=list)
    """Per episode [T, act]: the actions taken there (only when recorded)."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def evaluate(agent: TDMPC, env: gym.Env, episodes: int, seed: int,
             step: int | None = None) -> tuple[float, float, list[float]]:
    """Mean, std and list of returns of `episodes` planner episodes in eval mode (no exploration), one after
    another with planner noise from torch's global generator (the evaluation of the committed cells).

    Episode i resets the environment with seed + i; `step` (default: `agent.step`) sets the
    planner's horizon and std schedules.
    """
    step = agent.step if step is None else step
    returns = []
    for i in range(episodes):
        total = 0.0
        for _, _, reward in eval_episode(agent, env, seed + i, step):
            total += reward
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns)), returns


def eval_episode(agent: TDMPC, env: gym.Env, seed: int, step: int) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """One planner episode in eval mode from `env.reset(seed=seed)`, planner noise from torch's global
    generator: yields (observation, the action taken in it, reward) per step until the task terminates or
    truncates the episode."""
    obs, _ = env.reset(seed=seed)
    done, t = False, 0
    while not done:
        action = agent.act(obs, True, step, t0=t == 0)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        yield obs, action, reward
        obs, t, done = next_obs, t + 1, terminated or truncated


class LockstepEvaluator:
    """Runs evaluation episodes of agents together: one batched plan per environment step.

    Episode i of `run(agent, episodes, seed)` resets its environment with seed + i (as `evaluate` does) and
    draws its planner noise from its own generator seeded with seed + i. Episodes that end early keep being
    planned for with their last observation (fixed batch shapes) until all have ended; their returns are final
    when they end. With `lockstep=False` the episodes run one after another (batches of one), with the same
    returns up to float rounding. Environments are made once (`make_env`) and reused; `stepping` (see
    STEPPINGS) says whether they step in this process or in processes of their own.
    """

    def __init__(self, make_env: Callable[[], gym.Env], lockstep: bool = True, stepping: str = "auto") -> None:
        if stepping not in STEPPINGS:
            raise ValueError(f"stepping must be one of {', '.join(STEPPINGS)}, got {stepping!r}")
        self.make_env, self.lockstep, self.stepping = make_env, lockstep, stepping
        self._envs: list[gym.Env] = []
        self._vector: gym.vector.AsyncVectorEnv | None = None

    def __repr__(self) -> str:
        return f"LockstepEvaluator({'lock-step' if self.lockstep else 'sequential'}, {len(self._envs)} envs)"

    def envs(self, count: int) -> list[gym.Env]:
        """`count` environments, made once and reused."""
        while len(self._envs) < count:
            self._envs.append(self.make_env())
        return self._envs[:count]

    def vector_env(self, count: int) -> gym.vector.AsyncVectorEnv:
        """`count` environments in processes of their own, made once per count and reused (no autoreset)."""
        if self._vector is None or self._vector.num_envs != count:
            self.close()
            self._vector = gym.vector.AsyncVectorEnv([self.make_env] * count, context="fork",
                                                     autoreset_mode=gym.vector.AutoresetMode.DISABLED)
        return self._vector

    def close(self) -> None:
        """End the processes of the async environments, if any."""
        if self._vector is not None:
            self._vector.close()
            self._vector = None

    def steps_async(self, agent: TDMPC, episodes: int) -> bool:
        """Whether episodes of `agent` step their environments in processes of their own."""
        if self.stepping == "auto":
            return agent.device.type == "cuda" and episodes > 1
        return self.stepping == "async"

    def run(self, agent: TDMPC, episodes: int, seed: int, step: int | None = None,
            record: bool = False) -> Evaluation:
        """Evaluate `agent` (eval mode, `step` default `agent.step`) on `episodes` episodes; `record` keeps the
        observations and actions of each episode."""
        if episodes < 1:
            raise ValueError(f"evaluation needs at least one episode, got {episodes}")
        seeds = [seed + i for i in range(episodes)]
        batches = [seeds] if self.lockstep else [[s] for s in seeds]
        parts = [self._episodes(agent, batch, agent.step if step is None else step, record) for batch in batches]
        return Evaluation([r for p in parts for r in p.returns], sum(p.plan_seconds for p in parts),
                          sum(p.env_seconds for p in parts), sum(p.steps for p in parts),
                          [o for p in parts for o in p.observations], [a for p in parts for a in p.actions])

    def run_models(self, agents: Sequence[TDMPC], episodes: int, seed: int,
                   step: int | None = None) -> list[Evaluation]:
        """`run` for several agents (e.g. grid candidates), each on the same episodes with the same noise."""
        return [self.run(agent, episodes, seed, step) for agent in agents]

    def _episodes(self, agent: TDMPC, seeds: list[int], step: int, record: bool) -> Evaluation:
        steppers = (AsyncSteps(self.vector_env(len(seeds))) if self.steps_async(agent, len(seeds))
                    else InlineSteps(self.envs(len(seeds))))
        noise = EpisodeNoise.seeded(seeds)
        begin = time.perf_counter()
        obs = steppers.reset(seeds)
        env_seconds, plan_seconds = time.perf_counter() - begin, 0.0
        totals, done, t = np.zeros(len(seeds)), np.zeros(len(seeds), dtype=bool), 0
        visited: list[list[np.ndarray]] = [[] for _ in seeds]
        taken: list[list[np.ndarray]] = [[] for _ in seeds]
        agent.planner.reset()
        while not done.all():
            begin = time.perf_counter()
            actions = agent.act(obs, eval_mode=True, step=step, t0=t == 0, noise=noise)
            plan_seconds += time.perf_counter() - begin
            if record:
                for k in np.flatnonzero(~done):
                    visited[k].append(obs[k].copy())
                    taken[k].append(actions[k])
            begin = time.perf_counter()
            next_obs, reward, ended = steppers.step(actions, ~done)
            env_seconds += time.perf_counter() - begin
            live = ~done
            obs[live], totals[live] = next_obs[live], totals[live] + reward[live]
            done |= ended
            t += 1
        trajectories = ([np.stack(v) for v in visited], [np.stack(a) for a in taken]) if record else ([], [])
        return Evaluation([float(r) for r in totals], plan_seconds, env_seconds, t, *trajectories)


class InlineSteps:
    """Environments stepped one after another in this process; ended episodes are not stepped."""

    def __init__(self, envs: list[gym.Env]) -> None:
        self.envs = envs

    def reset(self, seeds: list[int]) -> np.ndarray:
        return np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, seeds)])

    def step(self, actions: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Next observations, rewards and whether each episode ended (zeros where not `live`)."""
        obs = np.zeros((len(self.envs), *self.envs[0].observation_space.shape), dtype=np.float32)
        reward, ended = np.zeros(len(self.envs)), np.zeros(len(self.envs), dtype=bool)
        for k in np.flatnonzero(live):
            obs[k], reward[k], terminated, truncated, _ = self.envs[k].step(actions[k])
            ended[k] = terminated or truncated
        return obs, reward, ended


class AsyncSteps:
    """Environments in processes of their own, stepped all at once; what ended episodes return is ignored."""

    def __init__(self, vector: gym.vector.AsyncVectorEnv) -> None:
        self.vector = vector

    def reset(self, seeds: list[int]) -> np.ndarray:
        return self.vector.reset(seed=seeds)[0].copy()

    def step(self, actions: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, reward, terminated, truncated, _ = self.vector.step(actions)
        return obs, np.asarray(reward, dtype=np.float64), (terminated | truncated) & live


def evaluate_agent(agent: TDMPC, make_env: Callable[[], gym.Env], episodes: int, seed: int,
                   evaluator: str = "lockstep", step: int | None = None) -> Evaluation:
    """Returns of `episodes` eval-mode episodes of `agent` with the named evaluator (see EVALUATORS)."""
    check_evaluator(evaluator)
    if evaluator == "legacy":
        _, _, returns = evaluate(agent, make_env(), episodes, seed, step)
        return Evaluation(returns)
    return LockstepEvaluator(make_env, lockstep=evaluator == "lockstep").run(agent, episodes, seed, step)


def check_evaluator(name: str) -> str:
    """`name` if it is one of EVALUATORS, else a ValueError naming them."""
    if name not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {', '.join(EVALUATORS)}, got {name!r}")
    return name
