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
    short = {v: k for k, v in DOMAIN_ALIASES.items()}
    return {f"{short.get(d, d)}-{t}".replace("_", "-"): (d, t) for d, t in suite.BENCHMARKING}


def _gym_ids() -> list[str]:
    return sorted(gym.registry.keys())


def list_tasks(include_gymnasium: bool = False) -> list[str]:
    """Known task names: dm_control suite benchmark tasks (`domain-task`) and registered ones."""
    names = sorted(_dmc_tasks()) + sorted(_EXTRA)
    return names + _gym_ids() if include_gymnasium else names


def register_task(name: str, factory: EnvFactory) -> None:
    """Make `make_env(name, seed)` return `factory(seed)`; names may not shadow built-in tasks."""
    if name in _dmc_tasks() or name in gym.registry:
        raise ValueError(f"task {name!r} already exists; pick another name")
    _EXTRA[name] = factory


def _gym_env(task: str, seed: int) -> gym.Env:
    env = gym.make(task)
    space = env.action_space
    if isinstance(space, gym.spaces.Box) and np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
        ones = np.ones(space.shape, dtype=space.dtype)
        env = gym.wrappers.RescaleAction(env, -ones, ones)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def make_env(task: str, seed: int = 0) -> gym.Env:
    """Build a task by name.

    `cartpole-swingup`, `cup-catch`, ... load dm_control with TD-MPC's action repeat;
    gymnasium ids such as `Pendulum-v1` go through `gymnasium.make` with actions rescaled
    to [-1, 1]; names added with `register_task` call their factory.
    """
    if task in _EXTRA:
        return _EXTRA[task](seed)
    dmc = _dmc_tasks()
    if task in dmc:
        domain, name = dmc[task]
        return DMCEnv(DMCSpec(domain, name, action_repeat_for(domain)), seed=seed)
    if task in gym.registry:
        return _gym_env(task, seed)
    raise UnknownTaskError(
        f"unknown task {task!r}. Known tasks: {', '.join(list_tasks())}; "
        f"or any gymnasium id (e.g. Pendulum-v1, InvertedPendulum-v5)")
