"""What a newcomer does with the README alone: train a tiny TD-MPC agent on a task that is not shipped
(a gymnasium task that terminates, another dm_control task, a plugin's task), prune it and score it."""
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.tdmpc import TDMPC, preset
from agents.tdmpc.buffer import ReplayBuffer
from agents.tdmpc.checkpoint import agent_env
from agents.tdmpc.train import LOG_FILE, TrainArgs, Trainer
import envs.registry
import pruning.registry
from benchmarks.cli import main as ctrlprune
from benchmarks.usecases import base as usecase_base
from envs import action_repeat_of, make_env, register_task

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "tiny", "--eval-episodes", "1", "--no-progress"]


def _train(task: str, steps: int, out: Path, *flags: str) -> Path:
    argv = [*flags, "train", "tdmpc", "--task", task, "--steps", str(steps), "--eval-freq", str(steps),
            "--save-freq", str(steps), "--out", str(out), *TINY]
    assert ctrlprune(argv) == 0
    return out / "agent.pt"


@pytest.mark.parametrize("task, steps", [("InvertedPendulum-v5", 200), ("acrobot-swingup", 1000)])
def test_new_task_trains_prunes_and_scores_through_the_cli(task: str, steps: int, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    agent = _train(task, steps, tmp_path / "run")
    pruned = tmp_path / "pruned.pt"
    assert ctrlprune(["prune", "--model", f"tdmpc-{task}", "--checkpoint", str(agent), "--method", "tp-magnitude",
                      "--sparsity", "0.3", "--out", str(pruned)]) == 0
    assert ctrlprune(["eval", str(pruned)]) == 0
    out = capsys.readouterr().out
    assert "return: " in out and "sparsity: 0.3" in out
    assert agent_env(agent)["action_repeat"] == (4 if task == "acrobot-swingup" else 1)


def test_hopper_terminates_and_trains(tmp_path: Path) -> None:
    env = make_env("Hopper-v5", 0)
    env.reset(seed=0)
    ended = [env.step(np.ones(3, np.float32)) for _ in range(200)]
    assert any(terminated for _, _, terminated, _, _ in ended)  # falls over: a terminating task
    agent = _train("Hopper-v5", 150, tmp_path / "hopper")
    assert agent.is_file() and "done: " in (tmp_path / "hopper" / LOG_FILE).read_text()


def test_observations_are_float32_and_action_repeat_is_settable() -> None:
    env = make_env("Hopper-v5", 0)  # gymnasium's MuJoCo tasks observe float64
    assert env.observation_space.dtype == np.float32 and env.reset(seed=0)[0].dtype == np.float32
    assert action_repeat_of(make_env("acrobot-swingup")) == 4 and action_repeat_of(make_env("acrobot-swingup", 0, 2)) == 2
    assert action_repeat_of(make_env("InvertedPendulum-v5", 0, 3)) == 3
    with pytest.raises(ValueError, match="action repeat"):
        make_env("InvertedPendulum-v5", 0, 0)


def test_terminal_steps_stop_bootstrapping() -> None:
    cfg = preset("tiny", seed_steps=0, batch_size=64)
    buffer = ReplayBuffer(obs_dim=2, act_dim=1, capacity=20, horizon=cfg.horizon)
    buffer.add(torch.randn(3, 2), torch.zeros(2, 1), torch.ones(2), terminated=True)  # shorter than the horizon
    assert buffer.priority[:2].min() > 0  # every step of a terminated episode may start a slice
    batch = buffer.sample(64)
    first = batch.idxs == 0
    assert batch.done[:, first].squeeze(-1).T.tolist()[0] == [0.0, 1.0, 0.0]
    assert batch.alive[:, first].squeeze(-1).T.tolist()[0] == [1.0, 1.0, 0.0, 0.0]
    agent = TDMPC(cfg, 2, 1)
    target = agent._td_target(batch.next_obs, batch.reward, batch.done)
    assert torch.equal(target[batch.done == 1], batch.reward[batch.done == 1])  # no value after the end
    assert torch.isfinite(torch.tensor(agent.update(buffer, 0)["total_loss"]))


@pytest.fixture
def registries() -> Iterator[None]:
    """Registered tasks, use cases and methods restored after the test (other tests list them); the example
    plugin re-imported so that `--plugin` registers its task even when an earlier test removed it."""
    saved = [(r, dict(r)) for r in (pruning.registry._METHODS, usecase_base._REGISTRY, envs.registry._EXTRA)]
    sys.modules.pop("examples.pendulum_mlp", None)
    yield
    for registry, before in saved:
        registry.clear()
        registry.update(before)
    sys.modules.pop("examples.pendulum_mlp", None)


@pytest.mark.usefixtures("registries")
def test_plugin_task_carries_its_plugin_and_action_repeat(tmp_path: Path) -> None:
    run = tmp_path / "short"
    agent = _train("pendulum-short", 120, run, "--plugin", "examples.pendulum_mlp")
    assert ctrlprune(["--plugin", "examples.pendulum_mlp", "train", "tdmpc", "--task", "pendulum-short",
                      "--action-repeat", "2", "--steps", "120", "--out", str(tmp_path / "r2"), *TINY]) == 0
    assert agent_env(agent) == {"task": "pendulum-short", "action_repeat": 1, "plugins": ["examples.pendulum_mlp"]}
    assert agent_env(tmp_path / "r2" / "agent.pt")["action_repeat"] == 2
    log = (tmp_path / "r2" / LOG_FILE).read_text()
    assert "--plugin examples.pendulum_mlp --task pendulum-short" in log and "--action-repeat 2" in log
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cli", "prune", "--model", "tdmpc-pendulum-short",
                           "--checkpoint", str(agent), "--method", "tp-magnitude", "--sparsity", "0.3", "--out",
                           str(tmp_path / "p.pt")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--plugin examples.pendulum_mlp" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "p.pt").exists()
    command = log.splitlines()[0].split("start: ")[1].split(" | ")[0].split()  # rerun as train.log says
    rerun = subprocess.run([sys.executable, *command[1:], "--no-progress"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "resume at 120" in (tmp_path / "r2" / LOG_FILE).read_text()


class _BreaksAfter(gym.Wrapper):
    """A real task that fails after `steps` steps, as a crashing simulator would."""

    def __init__(self, env: gym.Env, steps: int) -> None:
        super().__init__(env)
        self.left = steps

    def step(self, action):
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("simulator crashed")
        return self.env.step(action)


@pytest.mark.usefixtures("registries")
def test_a_failed_run_is_logged_and_leaves_no_event_file(tmp_path: Path) -> None:
    register_task("pendulum-breaks", lambda seed: gym.wrappers.TimeLimit(
        _BreaksAfter(make_env("Pendulum-v1", seed), 30), max_episode_steps=20))
    args = TrainArgs(task="pendulum-breaks", steps=200, preset="tiny", out_dir=str(tmp_path), progress=False)
    with pytest.raises(RuntimeError, match="simulator crashed"):
        Trainer(args).run()
    assert "failed at 20 env steps: RuntimeError: simulator crashed" in (tmp_path / LOG_FILE).read_text()
    assert not list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_train_help_exits_zero(capsys: pytest.CaptureFixture) -> None:
    assert ctrlprune(["train", "--help"]) == 0
    assert "tdmpc" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        ctrlprune(["train", "tdmpc", "--help"])
    assert done.value.code == 0 and "--action-repeat" in capsys.readouterr().out
