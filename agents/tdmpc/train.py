"""Train a TD-MPC agent on one task, resumably; `python -m agents.tdmpc.train --help`."""
from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from agents.device import DEVICES, resolve_device
from agents.tdmpc.agent import TDMPC, UPDATE_MODES
from agents.tdmpc.buffer import ReplayBuffer
from agents.checkpoint import CheckpointError, load_checkpoint, replace_atomically
from agents.tdmpc.checkpoint import FORMAT_VERSION, RESUME_KIND, load_resume, save_agent, save_resume
from agents.tdmpc.config import PRECISIONS, PRESETS, TDMPCConfig, preset
from agents.tdmpc.evaluate import evaluate  # noqa: F401  (also imported from here)
from agents.tdmpc.model import warn_if_emulated_bf16
from envs.registry import UnknownTaskError, action_repeat_of, make_env

AGENT_FILE, RESUME_FILE, EVAL_FILE, LOG_FILE = "agent.pt", "resume.pt", "eval.csv", "train.log"


@dataclass
class TrainArgs:
    """What to train, for how long, and where to write it."""

    task: str = "cartpole-swingup"
    """Task name understood by `envs.make_env`."""
    action_repeat: int = 0
    """Physics steps per agent step; 0 means the task's default (`envs.default_action_repeat`)."""
    plugins: tuple[str, ...] = ()
    """Modules imported first (they may register the task), recorded in every command and checkpoint."""
    seed: int = 1
    """Seed of torch, the training environment and the evaluation episodes."""
    steps: int = 100_000
    """Environment steps (agent steps x action repeat) to train for."""
    preset: str = "cpu"
    """TDMPCConfig preset: upstream, cpu or tiny."""
    precision: str = ""
    """Override of the preset's matmul precision (fp32 or bf16); empty keeps the preset's."""
    out_dir: str = ""
    """Output folder; empty means checkpoints/tdmpc/<task>-seed<seed>."""
    eval_freq: int = 20_000
    """Evaluate every this many environment steps (and at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    save_freq: int = 5_000
    """Write the resume state every this many environment steps (and at the end)."""
    threads: int = 1
    """torch intra-op threads (1 is fastest when the 2 cores are shared with other jobs)."""
    device: str = "auto"
    """Where models, planner and replay live: auto (CUDA where available), cpu or cuda."""
    update_mode: str = "auto"
    """How updates run: eager, compile (torch.compile; CUDA graphs on CUDA) or auto (compile on CUDA only)."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def command(self) -> str:
        """The shell command that runs (or resumes) exactly this training."""
        flags = ("".join(f"--plugin {shlex.quote(m)} " for m in self.plugins) +
                 f"--task {shlex.quote(self.task)} --seed {self.seed} --steps {self.steps} --preset {self.preset} "
                 + (f"--action-repeat {self.action_repeat} " if self.action_repeat else "")
                 + (f"--precision {self.precision} " if self.precision else "") +
                 f"--out {self.output_dir()} --eval-freq {self.eval_freq} --eval-episodes {self.eval_episodes} "
                 f"--save-freq {self.save_freq} --threads {self.threads} --device {self.device} "
                 f"--update-mode {self.update_mode}")
        return f"python -m agents.tdmpc.train {flags}"

    def output_dir(self) -> Path:
        """The folder this run writes to."""
        return Path(self.out_dir or f"checkpoints/tdmpc/{self.task}-seed{self.seed}")


@dataclass
class Progress:
    """Counters saved in the resume state."""

    step: int = 0
    """Agent steps collected."""
    updates: int = 0
    """Gradient updates done."""
    episode: int = 0
    """Training episodes finished."""
    wall: float = 0.0
    """Seconds of training wall time over all sessions."""




def _write_eval_csv(path: Path, seed: int, history: list[tuple[int, float]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["seed", "step", "return"])
    writer.writerows([seed, step, f"{ret:.2f}"] for step, ret in history)
    replace_atomically(path, lambda handle: handle.write(buf.getvalue().encode("utf-8")))


def _log(out: Path, line: str) -> None:
    with open(out / LOG_FILE, "a") as f:
        f.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC] {line}\n")


def episode_limit(env: gym.Env) -> int:
    """Agent steps after which `env` truncates an episode (1000 when it names no limit)."""
    limit = env.unwrapped.spec.max_episode_steps if env.unwrapped.spec else None
    return getattr(env.unwrapped, "max_episode_steps", None) or limit or 1000


def collect_episode(env: gym.Env, agent: TDMPC, seed: int, plan_ms: list[float]):
    """One training episode with the agent's current step, until the task terminates or truncates it;
    returns (obs, actions, rewards, terminated)."""
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards = [torch.as_tensor(obs)], [], []
    done, t = False, 0
    while not done:
        start = time.perf_counter()
        action = agent.plan(obs, eval_mode=False, step=agent.step, t0=t == 0)
        plan_ms.append((time.perf_counter() - start) * 1e3)
        obs, reward, terminated, truncated, _ = env.step(action.cpu().numpy())
        observations.append(torch.as_tensor(obs))
        actions.append(action)
        rewards.append(reward)
        done, t = terminated or truncated, t + 1
    return (torch.stack(observations), torch.stack(actions), torch.tensor(rewards, dtype=torch.float32),
            bool(terminated))


class Trainer:
    """Owns the environments, agent, buffer and outputs of one run."""

    def __init__(self, args: TrainArgs) -> None:
        self.args, self.out = args, args.output_dir()
        self.device = resolve_device(args.device)
        self.cfg: TDMPCConfig = preset(args.preset, **({"precision": args.precision} if args.precision else {}))
        warn_if_emulated_bf16(self.cfg.precision, f"training on {args.task}")
        self.env, self.eval_env = self._make_env(), self._make_env()
        self.repeat = action_repeat_of(self.env)
        self.env_info = {"task": args.task, "action_repeat": self.repeat, "plugins": list(args.plugins)}
        """How to rebuild the environment, stored in every checkpoint of the run (`env`)."""
        obs_dim, act_dim = self.env.observation_space.shape[0], self.env.action_space.shape[0]
        self.total = args.steps // self.repeat
        self.agent = TDMPC(self.cfg, obs_dim, act_dim, self.device, update_mode=args.update_mode)
        episode = episode_limit(self.env)
        capacity = -(-self.total // episode) * episode + episode  # episodes may end early (terminating tasks)
        self.buffer = ReplayBuffer(obs_dim, act_dim, min(capacity, self.cfg.max_buffer_size),
                                   self.cfg.horizon, self.cfg.per_alpha, self.cfg.per_beta, self.device)
        self.progress, self.history = Progress(), []
        self.resumed = self._maybe_resume()

    def __repr__(self) -> str:
        return (f"Trainer({self.args.task}, seed={self.args.seed}, {self.progress.step * self.repeat}/"
                f"{self.total * self.repeat} env steps, out={self.out})")

    def _make_env(self) -> gym.Env:
        """The task's environment; an unknown task in a folder whose resume state names plugins says so."""
        from benchmarks.sweep.suite import import_plugins

        import_plugins(self.args.plugins)
        try:
            return make_env(self.args.task, self.args.seed, self.args.action_repeat or None)
        except UnknownTaskError as err:
            plugins = _recorded_plugins(self.out / RESUME_FILE)
            if plugins:
                raise UnknownTaskError(f"unknown task {self.args.task!r}: {self.out} was trained with "
                                       + " ".join(f"--plugin {m}" for m in plugins) + "; rerun with the command in "
                                       f"{self.out / LOG_FILE}") from err
            raise

    def _maybe_resume(self) -> bool:
        path = self.out / RESUME_FILE
        if not path.exists():
            torch.manual_seed(self.args.seed)
            return False
        data = load_resume(path, self.args.task, self.cfg)
        if data["seed"] != self.args.seed:
            raise ValueError(f"{path} belongs to seed {data['seed']}, not {self.args.seed}")
        recorded = data.get("env", {}).get("action_repeat", self.repeat)
        if recorded != self.repeat:
            raise ValueError(f"{path} was trained with action repeat {recorded}, not {self.repeat}; "
                             f"pass --action-repeat {recorded}")
        self.agent.load_state_dict(data["agent"])
        self.buffer.load_state_dict(data["buffer"])
        self.progress = Progress(**data["progress"])
        self.history = [(int(s), float(r)) for s, r in data["history"]]
        torch.set_rng_state(data["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in data:
            torch.cuda.set_rng_state(data["cuda_rng"], self.device)
        return True

    def _save_resume(self) -> None:
        save_resume(self.out / RESUME_FILE, self.agent, self.args.task, {
            "seed": self.args.seed, "buffer": self.buffer.state_dict(), "progress": asdict(self.progress),
            "history": [list(h) for h in self.history], "torch_rng": torch.get_rng_state(),
            **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {})},
            self.env_info)

    def _evaluate(self, writer: SummaryWriter, wall: float) -> float:
        env_step = self.progress.step * self.repeat
        mean, std, _ = evaluate(self.agent, self.eval_env, self.args.eval_episodes, self.args.seed * 1000)
        self.history.append((env_step, mean))
        _write_eval_csv(self.out / EVAL_FILE, self.args.seed, self.history)
        save_agent(self.out / AGENT_FILE, self.agent, self.args.task, self.env_info)
        writer.add_scalar("eval/return", mean, env_step)
        writer.add_scalar("eval/return_std", std, env_step)
        _log(self.out, f"eval at {env_step} env steps: return {mean:.1f} +- {std:.1f} "
                       f"({self.args.eval_episodes} episodes), training wall time so far {wall:.0f} s")
        return mean

    def _update(self, writer: SummaryWriter) -> None:
        start, losses = time.perf_counter(), []
        n = self.progress.step - self.progress.updates
        for i in range(n):
            losses.append(self.agent.update(self.buffer, self.progress.updates + i))
        self.progress.updates += n
        env_step = self.progress.step * self.repeat
        writer.add_scalar("perf/update_ms", (time.perf_counter() - start) * 1e3 / max(n, 1), env_step)
        for key in losses[0] if losses else []:
            writer.add_scalar(f"train/{key}", float(np.mean([m[key] for m in losses])), env_step)

    def run(self) -> Path:
        """Train until `args.steps` environment steps; returns the output folder. A run that fails says so in
        train.log, and a fresh run that fails before its first resume state leaves no event file behind."""
        args, p = self.args, self.progress
        self.out.mkdir(parents=True, exist_ok=True)
        before = set((self.out / "tb").glob("events.out.tfevents.*"))
        _log(self.out, f"{'resume at ' + str(p.step * self.repeat) if self.resumed else 'start'}: "
                       f"{args.command()} | nproc={os.cpu_count()} "
                       f"torch={torch.__version__} threads={args.threads} device={self.device} "
                       f"python={platform.python_version()}")
        writer = SummaryWriter(str(self.out / "tb"), purge_step=p.step * self.repeat if self.resumed else None)
        try:
            if not self.resumed:
                writer.add_text("config", "\n".join(f"    {k} = {v}" for k, v in
                                                   {**asdict(args), **self.cfg.to_dict()}.items()))
            self._loop(writer)
        except BaseException as err:
            writer.close()
            if not (self.out / RESUME_FILE).exists():
                for path in set((self.out / "tb").glob("events.out.tfevents.*")) - before:
                    path.unlink()
            _log(self.out, f"failed at {p.step * self.repeat} env steps: {type(err).__name__}: {err}")
            raise
        writer.close()
        final = self.history[-1][1] if self.history else float("nan")
        _log(self.out, f"done: {p.step * self.repeat} env steps, final eval return {final:.1f}, "
                       f"training wall time {p.wall:.0f} s")
        return self.out

    def _loop(self, writer: SummaryWriter) -> None:
        """Collect episodes, update, evaluate and save until `args.steps` environment steps."""
        args, p, cfg = self.args, self.progress, self.cfg
        bar = tqdm(total=self.total * self.repeat, initial=p.step * self.repeat, unit="env step",
                   disable=not args.progress, dynamic_ncols=True)
        while p.step < self.total:
            session_start, last = time.perf_counter(), p.step * self.repeat
            plan_ms: list[float] = []
            self.agent.step = p.step
            obs, actions, rewards, terminated = collect_episode(self.env, self.agent,
                                                                 args.seed * 1_000_003 + p.episode, plan_ms)
            self.buffer.add(obs, actions, rewards, terminated)
            p.step, p.episode = p.step + len(actions), p.episode + 1
            self.agent.step = p.step
            if p.step - len(actions) >= cfg.seed_steps:
                self._update(writer)
            env_step = p.step * self.repeat
            writer.add_scalar("train/episode_return", float(rewards.sum()), env_step)
            if p.step - len(actions) >= cfg.seed_steps:
                writer.add_scalar("perf/plan_ms", float(np.median(plan_ms)), env_step)
            done = p.step >= self.total
            if env_step // args.eval_freq > last // args.eval_freq or done:
                wall = p.wall + time.perf_counter() - session_start
                bar.set_postfix(eval=f"{self._evaluate(writer, wall):.1f}")
            p.wall += time.perf_counter() - session_start
            writer.add_scalar("perf/env_steps_per_s", (env_step - last) / (time.perf_counter() - session_start), env_step)
            if env_step // args.save_freq > last // args.save_freq or done:
                self._save_resume()
            bar.update(env_step - last)
        bar.close()


def _recorded_plugins(resume: Path) -> list[str]:
    """The plugins a run's resume state was trained with (empty when there is none or it is unreadable)."""
    try:
        return list(load_checkpoint(resume, RESUME_KIND, version=FORMAT_VERSION).get("env", {}).get("plugins", []))
    except (CheckpointError, OSError):
        return []


def train(args: TrainArgs) -> Path:
    """Train (or resume, when `out_dir` holds a resume state) and return the output folder."""
    torch.set_num_threads(args.threads)
    return Trainer(args).run()


def parse_args(argv: list[str] | None = None) -> TrainArgs:
    """Command-line flags mirroring the TrainArgs fields."""
    d = TrainArgs()
    ap = argparse.ArgumentParser(prog="ctrlprune train tdmpc", description="Train a TD-MPC agent (resumable).")
    ap.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                    help="import MODULE first (it may register the task); repeatable, recorded in the checkpoints")
    ap.add_argument("--task", default=d.task, help="task name: a dm_control domain-task (e.g. acrobot-swingup), "
                    "a gymnasium id (e.g. InvertedPendulum-v5) or a registered task")
    ap.add_argument("--action-repeat", type=int, default=d.action_repeat, metavar="N",
                    help="physics steps per agent step (default 0: the task's, e.g. 8 for cartpole, 1 for gymnasium)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--steps", type=int, default=d.steps, help="environment steps")
    ap.add_argument("--preset", default=d.preset, choices=sorted(PRESETS))
    ap.add_argument("--precision", default=d.precision, choices=["", *PRECISIONS],
                    help="matmul precision override (default: the preset's)")
    ap.add_argument("--out", default=d.out_dir, help="output folder (default checkpoints/tdmpc/<task>-seed<seed>)")
    ap.add_argument("--eval-freq", type=int, default=d.eval_freq, help="environment steps between evaluations")
    ap.add_argument("--eval-episodes", type=int, default=d.eval_episodes)
    ap.add_argument("--save-freq", type=int, default=d.save_freq, help="environment steps between resume states")
    ap.add_argument("--threads", type=int, default=d.threads)
    ap.add_argument("--device", default=d.device, choices=DEVICES,
                    help="where models, planner and replay run: auto (CUDA where available), cpu or cuda")
    ap.add_argument("--update-mode", default=d.update_mode, choices=UPDATE_MODES,
                    help="how updates run: eager, compile (torch.compile; CUDA graphs on CUDA) or auto "
                         "(compile on CUDA, eager on the CPU)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    a = ap.parse_args(argv)
    if a.action_repeat < 0:
        ap.error(f"--action-repeat must be >= 1 (or 0 for the task's default), got {a.action_repeat}")
    return TrainArgs(task=a.task, action_repeat=a.action_repeat, plugins=tuple(a.plugin), seed=a.seed, steps=a.steps, preset=a.preset, precision=a.precision, out_dir=a.out,
                     eval_freq=a.eval_freq, eval_episodes=a.eval_episodes, save_freq=a.save_freq,
                     threads=a.threads, device=a.device, update_mode=a.update_mode, progress=not a.no_progress)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m agents.tdmpc.train` and `ctrlprune train tdmpc`."""
    print(train(parse_args(argv)))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, CheckpointError, FileNotFoundError, RuntimeError) as err:
        print(f"agents.tdmpc.train: error: {err}", file=sys.stderr)
        sys.exit(2)
