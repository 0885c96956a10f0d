"""TD-MPC speed on this machine: plan ms, update ms and env steps/s for the cpu preset and upstream
sizes, next to the measured fp32 matmul roofline. `python -m benchmarks.tdmpc_speed --help`."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from agents.tdmpc import TDMPC, ReplayBuffer, TDMPCConfig, preset
from benchmarks.sweep.worker import machine_info
from envs import make_env
from envs.dmc import PHYSICS_STEPS_PER_EPISODE


@dataclass
class SpeedRow:
    """Timings of one configuration."""

    config: str
    """Preset and precision, e.g. cpu/fp32."""
    params: int
    """TOLD parameters."""
    plan_ms: float
    """Median wall time of one planned action."""
    update_ms: float
    """Median wall time of one gradient update."""
    env_ms: float
    """Median wall time of one agent step of the environment (action repeat included)."""
    env_steps_per_s: float
    """Environment steps per second with one plan and one update per agent step."""
    minutes_per_100k: float
    """Wall minutes for 100k environment steps at that rate (no evaluation)."""
    plan_gflop: float
    """Floating-point work of one plan (matmuls, counted by torch)."""
    update_gflop: float
    """Floating-point work of one update (matmuls, counted by torch)."""
    plan_roofline_ms: float
    """plan_gflop at the measured fp32 matmul rate."""
    update_roofline_ms: float
    """update_gflop at the measured fp32 matmul rate."""


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of `fn` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Measured fp32 matmul rate (GFLOP/s) with the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / median_ms(lambda: a @ b, repeats) / 1e6


def gflop(fn: Callable[[], object]) -> float:
    """Floating-point work of one call, in GFLOP, as counted by torch's FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def measure(name: str, cfg: TDMPCConfig, task: str, repeats: int, gflops: float) -> SpeedRow:
    """Time planning, updating and stepping the environment for one configuration."""
    env = make_env(task, seed=0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    repeat = env.dmc_spec.action_repeat
    length = PHYSICS_STEPS_PER_EPISODE // repeat
    agent = TDMPC(cfg, obs_dim, act_dim)
    buffer = ReplayBuffer(obs_dim, act_dim, 10 * length, cfg.horizon)
    for _ in range(10):
        buffer.add(torch.randn(length + 1, obs_dim), torch.rand(length, act_dim) * 2 - 1, torch.rand(length))
    late = cfg.horizon_schedule_steps + cfg.std_schedule_steps
    obs, _ = env.reset(seed=0)
    plan = lambda: agent.plan(obs, step=late, t0=False)
    update = lambda: agent.update(buffer, 1)
    action = np.zeros(act_dim, np.float32)
    env_ms = median_ms(lambda: env.step(action), 50)
    plan_ms, update_ms = median_ms(plan, repeats), median_ms(update, max(repeats // 2, 3))
    plan_gf, update_gf = gflop(plan), gflop(update)
    per_step = plan_ms + update_ms + env_ms
    return SpeedRow(name, sum(p.numel() for p in agent.model.parameters()), plan_ms, update_ms, env_ms,
                    repeat * 1e3 / per_step, 1e5 / repeat * per_step / 6e4, plan_gf, update_gf,
                    plan_gf / gflops * 1e3, update_gf / gflops * 1e3)


def _yes_no(flag: bool | None) -> str:
    if flag is None:
        return "not recorded"
    return "yes" if flag else "no (bf16 Linears run as fp32 matmuls of bf16-rounded values)"


def to_markdown(rows: list[SpeedRow], meta: dict) -> str:
    """Report table plus how it was measured."""
    head = ["config", "params", "plan ms", "update ms", "env ms", "env steps/s", "min / 100k",
            "plan GFLOP", "update GFLOP", "plan roofline ms", "update roofline ms"]
    lines = ["# TD-MPC speed", "",
             f"`{meta['command']}` on {meta['nproc']} cores, {meta['threads']} torch thread(s), "
             f"torch {meta['torch']}, task {meta['task']}, {meta['time']}; CPU kernels "
             f"{meta.get('cpu_capability', '?')}, native bf16: {_yes_no(meta.get('native_bf16'))}.",
             "Measured fp32 matmul rate (1024x1024): "
             + ", ".join(f"**{g:.0f} GFLOP/s** with {n} thread(s)" for n, g in meta["gflops_by_threads"].items())
             + f"; the roofline columns divide each call's counted FLOPs by the {meta['threads']}-thread rate.",
             "Plans use the full horizon (training grows it from 1 over `horizon_schedule_steps`). Env steps/s "
             "assume one plan and one update per agent step and no evaluation. Medians; on a shared machine "
             f"they vary with load (load average at start: {meta['load']}).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r.config} | {r.params:,} | {r.plan_ms:.1f} | {r.update_ms:.1f} | {r.env_ms:.2f} | "
                     f"{r.env_steps_per_s:.0f} | {r.minutes_per_100k:.1f} | {r.plan_gflop:.2f} | "
                     f"{r.update_gflop:.2f} | {r.plan_roofline_ms:.1f} | {r.update_roofline_ms:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Measure and write results/tdmpc_speed.md and .json."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tdmpc_speed", description=__doc__)
    ap.add_argument("--task", default="cartpole-swingup")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20, help="timed plans (updates: half)")
    ap.add_argument("--configs", default="cpu/fp32,cpu/bf16,upstream/fp32,upstream/bf16",
                    help="comma-separated preset/precision pairs")
    ap.add_argument("--out", default="results/tdmpc_speed", help="output path without extension")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rates = {}
    for n in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(n)
        rates[n] = matmul_gflops()
    torch.set_num_threads(args.threads)
    gflops = rates.get(args.threads) or matmul_gflops()
    flags = sys.argv[1:] if argv is None else argv
    meta = {"command": " ".join(["python -m benchmarks.tdmpc_speed", *flags]),
            "nproc": os.cpu_count(), "threads": args.threads, "task": args.task,
            "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "gflops": gflops,
            "gflops_by_threads": rates,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()), **machine_info()}
    rows = []
    for item in args.configs.split(","):
        name, precision = item.split("/")
        rows.append(measure(item, replace(preset(name), precision=precision), args.task,
                            args.repeats if name != "upstream" else max(args.repeats // 4, 3), gflops))
        print(rows[-1])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(to_markdown(rows, meta))
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1))
    print(to_markdown(rows, meta))


if __name__ == "__main__":
    main()
