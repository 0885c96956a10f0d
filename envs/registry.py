"""One entry point for every task: dm_control suite tasks, gymnasium ids and registered extras."""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
from dm_control import suite

from envs.dmc import DOMAIN_ALIASES, DMCEnv, DMCSpec, action_repeat_for

EnvFactory = Callable[[int], gym.Env]
"""Builds an environment from a seed."""

_EXTRA: dict[str, EnvFactory] = {}


class UnknownTaskError(ValueError):
    """Raised for a task name that is neither a dm_control task, a gymnasium id nor registered."""


def _dmc_tasks() -> dict[str, tuple[str, str]]:
    """Every dm_control suite task as `domain-task` (underscores as dashes, `cup` for ball_in_cup)."""
    short = {v: k for k, v in DOMAIN_ALIASES.items()}
    return {f"{short.get(d, d)}-{t}".replace("_", "-"): (d, t) for d, t in suite.ALL_TASKS}


def _gym_ids() -> list[str]:
    return sorted(gym.registry.keys())


def list_tasks(include_gymnasium: bool = False) -> list[str]:
    """Known task names: dm_control suite benchmark tasks (`domain-task`) and registered ones; every other
    dm_control suite task (`ALL_TASKS`) works by name too."""
    short = {v: k for k, v in DOMAIN_ALIASES.items()}
    names = sorted(f"{short.get(d, d)}-{t}".replace("_", "-") for d, t in suite.BENCHMARKING) + sorted(_EXTRA)
    return names + _gym_ids() if include_gymnasium else names


def is_known_task(task: str) -> bool:
    """Whether `make_env` knows `task` now (a plugin's task only once the plugin is imported)."""
    return task in _EXTRA or task in _dmc_tasks() or task in gym.registry


def register_task(name: str, factory: EnvFactory) -> None:
    """Make `make_env(name, seed)` return `factory(seed)`; names may not shadow built-in tasks."""
    if name in _dmc_tasks() or name in gym.registry:
        raise ValueError(f"task {name!r} already exists; pick another name")
    _EXTRA[name] = factory


class ActionRepeat(gym.Wrapper):
    """Repeat each action `action_repeat` times, summing the rewards; stops early when the episode ends."""

    def __init__(self, env: gym.Env, action_repeat: int) -> None:
        super().__init__(env)
        self.action_repeat = action_repeat

    def step(self, action):
        total = 0.0
        for _ in range(self.action_repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


def action_repeat_of(env: gym.Env) -> int:
    """Physics steps per agent step of an environment built by `make_env` (1 without action repeat)."""
    try:
        return int(env.get_wrapper_attr("action_repeat"))
    except AttributeError:
        return 1


def default_action_repeat(task: str) -> int:
    """The action repeat `make_env` uses for `task` when none is given: TD-MPC's per-domain table for
    dm_control tasks, 1 for gymnasium ids and registered tasks."""
    dmc = _dmc_tasks()
    return action_repeat_for(dmc[task][0]) if task in dmc and task not in _EXTRA else 1


def _float32_observations(env: gym.Env) -> gym.Env:
    """Cast Box observations to float32 (the dtype of the agents' weights); other spaces pass unchanged."""
    space = env.observation_space
    if isinstance(space, gym.spaces.Box) and space.dtype != np.float32:
        box = gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32), dtype=np.float32)
        return gym.wrappers.TransformObservation(env, lambda obs: np.asarray(obs, dtype=np.float32), box)
    return env


def _gym_env(task: str, seed: int) -> gym.Env:
    env = gym.make(task)
    space = env.action_space
    if isinstance(space, gym.spaces.Box) and np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
        ones = np.ones(space.shape, dtype=space.dtype)
        env = gym.wrappers.RescaleAction(env, -ones, ones)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def make_env(task: str, seed: int = 0, action_repeat: int | None = None) -> gym.Env:
    """Build a task by name, with float32 observations.

    `cartpole-swingup`, `acrobot-swingup`, ... (every dm_control suite `domain-task`) load dm_control with
    TD-MPC's per-domain action repeat; gymnasium ids such as `InvertedPendulum-v5` go through
    `gymnasium.make` (its time limit and `terminated` flag kept) with actions rescaled to [-1, 1]; names
    added with `register_task` call their factory. `action_repeat` overrides the default
    (`default_action_repeat`); rewards are summed over the repeated steps.
    """
    repeat = default_action_repeat(task) if action_repeat is None else action_repeat
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"action repeat must be a whole number >= 1, got {action_repeat!r}")
    dmc = _dmc_tasks()
    if task in _EXTRA:
        env = _EXTRA[task](seed)
    elif task in dmc:
        domain, name = dmc[task]
        return DMCEnv(DMCSpec(domain, name, repeat), seed=seed)
    elif task in gym.registry:
        env = _gym_env(task, seed)
    else:
        raise UnknownTaskError(
            f"unknown task {task!r}. Known tasks: {', '.join(list_tasks())}; any dm_control suite "
            f"domain-task; or any gymnasium id (e.g. Pendulum-v1, InvertedPendulum-v5). A task registered "
            f"by a plugin needs that plugin: ctrlprune --plugin MODULE ...")
    env = _float32_observations(env)
    return ActionRepeat(env, repeat) if repeat > 1 else env
