"""dm_control suite tasks as gymnasium environments (state observations, TD-MPC conventions)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before dm_control loads

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from dm_control import suite  # noqa: E402

PHYSICS_STEPS_PER_EPISODE = 1000
"""Every dm_control suite task runs 1000 physics-control steps per episode."""

ACTION_REPEAT = {"cartpole": 8, "walker": 2, "finger": 2, "humanoid": 2, "dog": 2}
"""Per-domain action repeat used by TD-MPC; other domains use `DEFAULT_ACTION_REPEAT`."""

DEFAULT_ACTION_REPEAT = 4

DOMAIN_ALIASES = {"cup": "ball_in_cup"}
"""Short domain names used in task ids (`cup-catch`) mapped to dm_control domain names."""


def action_repeat_for(domain: str) -> int:
    """TD-MPC's action repeat for a domain (short or dm_control name)."""
    short = {v: k for k, v in DOMAIN_ALIASES.items()}.get(domain, domain)
    return ACTION_REPEAT.get(short, DEFAULT_ACTION_REPEAT)


@dataclass(frozen=True)
class DMCSpec:
    """Which dm_control task to load and how to step it."""

    domain: str
    """dm_control domain name, e.g. `ball_in_cup`."""
    task: str
    """dm_control task name, e.g. `catch`."""
    action_repeat: int
    """Physics steps per agent step; rewards are summed over them."""


class DMCEnv(gym.Env):
    """A dm_control task with flat float32 observations, actions in [-1, 1] and action repeat.

    Episodes last 1000 physics steps (``1000 // action_repeat`` agent steps) and end
    with ``truncated=True``; dm_control tasks never terminate.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, spec: DMCSpec, seed: int = 0, render_mode: str | None = None) -> None:
        self.dmc_spec = spec
        self.render_mode = render_mode
        self._env = suite.load(spec.domain, spec.task, task_kwargs={"random": seed})
        act = self._env.action_spec()
        self._act_low = act.minimum.astype(np.float64)
        self._act_high = act.maximum.astype(np.float64)
        obs_dim = sum(int(np.prod(v.shape)) for v in self._env.observation_spec().values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        ones = np.ones(act.shape, np.float32)
        self.action_space = gym.spaces.Box(-ones, ones, dtype=np.float32)
        self.max_episode_steps = PHYSICS_STEPS_PER_EPISODE // spec.action_repeat
        self._t = 0

    def __repr__(self) -> str:
        s = self.dmc_spec
        return (f"DMCEnv({s.domain}-{s.task}, obs={self.observation_space.shape[0]}, "
                f"act={self.action_space.shape[0]}, repeat={s.action_repeat}, "
                f"episode={self.max_episode_steps} steps)")

    __str__ = __repr__

    @property
    def action_repeat(self) -> int:
        """Physics steps per agent step."""
        return self.dmc_spec.action_repeat

    @property
    def physics(self):
        """The dm_control physics (for state access and rendering)."""
        return self._env.physics

    @staticmethod
    def _flat(observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in observation.values()])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
        self._t = 0
        return self._flat(self._env.reset().observation), {}

    def step(self, action: np.ndarray):
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        a = self._act_low + (a + 1.0) * 0.5 * (self._act_high - self._act_low)
        reward = 0.0
        for _ in range(self.dmc_spec.action_repeat):
            ts = self._env.step(a)
            reward += ts.reward or 0.0
        self._t += 1
        truncated = self._t >= self.max_episode_steps or ts.last()
        return self._flat(ts.observation), float(reward), False, truncated, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self.physics.render(84, 84, camera_id=0)
        return None
