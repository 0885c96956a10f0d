"""Task registry and dm_control wrapper contract, on real dm_control physics."""
import warnings

import numpy as np
import pytest
from dm_control import suite
from gymnasium.utils.env_checker import check_env

from envs import DMCEnv, UnknownTaskError, list_tasks, make_env, register_task


def rollout(env, actions, seed):
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    for a in actions:
        obs, reward, *_ = env.step(a)
        trace += [obs, np.array([reward])]
    return np.concatenate(trace)


def test_spaces_dtypes_and_bounds():
    env = make_env("cup-catch", seed=0)
    assert isinstance(env, DMCEnv) and env.dmc_spec.domain == "ball_in_cup"
    assert env.dmc_spec.action_repeat == 4 and env.max_episode_steps == 250
    obs, info = env.reset(seed=1)
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape == (8,)
    assert env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.dtype == np.float32 and isinstance(reward, float) and not terminated and not truncated


def test_action_repeat_sums_rewards_of_the_physics_steps():
    env = make_env("cartpole-swingup", seed=3)
    raw = suite.load("cartpole", "swingup", task_kwargs={"random": 3})
    env.reset()
    raw.reset()
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.uniform(-1, 1, size=1).astype(np.float32)
        _, reward, *_ = env.step(a)
        expected = sum(raw.step(a.astype(np.float64)).reward for _ in range(8))
        assert reward == pytest.approx(expected, abs=1e-9)
    np.testing.assert_array_equal(env.physics.get_state(), raw.physics.get_state())


def test_episode_has_1000_physics_steps_and_is_truncated():
    env = make_env("walker-walk", seed=0)
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, np.float32)
    for t in range(500):
        _, _, terminated, truncated, _ = env.step(zero)
        assert not terminated and truncated == (t == 499)


def test_same_seed_gives_identical_rollouts():
    actions = np.random.default_rng(1).uniform(-1, 1, (20, 2)).astype(np.float32)
    a, b = make_env("reacher-easy", seed=5), make_env("reacher-easy", seed=5)
    first = rollout(a, actions, seed=7)
    np.testing.assert_array_equal(first, rollout(b, actions, seed=7))
    np.testing.assert_array_equal(first, rollout(a, actions, seed=7))
    assert not np.array_equal(first, rollout(a, actions, seed=8))


def test_check_env_passes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(make_env("cartpole-swingup", seed=0), skip_render_check=True)


def test_unknown_task_lists_known_tasks():
    with pytest.raises(UnknownTaskError, match="cartpole-swingup") as err:
        make_env("cartpole-swingdown")
    assert isinstance(err.value, ValueError) and "walker-walk" in str(err.value)


def test_registry_names_gymnasium_ids_and_extensions():
    tasks = list_tasks()
    assert {"cartpole-swingup", "reacher-easy", "cup-catch", "walker-walk", "cheetah-run",
            "finger-spin", "pendulum-swingup"} <= set(tasks)
    env = make_env("Pendulum-v1", seed=0)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    register_task("test-pendulum", lambda seed: make_env("pendulum-swingup", seed))
    assert make_env("test-pendulum").dmc_spec.task == "swingup" and "test-pendulum" in list_tasks()
    with pytest.raises(ValueError, match="already exists"):
        register_task("cartpole-swingup", lambda seed: make_env("Pendulum-v1", seed))
