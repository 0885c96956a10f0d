"""TD-MPC speed on this machine, in one run: plan ms, update ms and env steps/s for the cpu preset and upstream
sizes next to the measured fp32 matmul roofline; plan ms per action of the one-observation path against the
batched planner at E observations, per thread count (and on CUDA where a GPU is available); one cell's
evaluation episodes, one after another against lock-step; and whole benchmark cells (search, evaluation and
the rest of the row) with the legacy evaluator against lock-step. `python -m benchmarks.tdmpc_speed --help`."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from agents.tdmpc import TDMPC, ReplayBuffer, TDMPCConfig, load_agent, preset
from agents.tdmpc.evaluate import LockstepEvaluator, evaluate
from agents.tdmpc.planner import EpisodeNoise
from benchmarks.sweep.store import Cell
from benchmarks.sweep.suite import load_suite
from benchmarks.sweep.executors import CELL_THREADS
from benchmarks.sweep.worker import Worker, machine_info
from envs import make_env
from envs.dmc import PHYSICS_STEPS_PER_EPISODE


@dataclass
class SpeedRow:
    """Timings of one configuration."""

    config: str
    """Preset, precision and update mode, e.g. cpu/fp32/eager (and the device where not the CPU)."""
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


@dataclass
class BatchRow:
    """Plan time per action of E episodes' observations: one plan each, or one batched plan."""

    device: str
    """cpu, or the CUDA device's name."""
    threads: int
    """torch intra-op threads."""
    mode: str
    """How the batched plan ran: eager, graphs or compile."""
    episodes: int
    """E: observations planned for per step."""
    single_ms: float
    """Median wall time of one one-observation plan (the path of the committed cells), per action."""
    batched_ms: float
    """Median wall time of one batched plan of E observations, divided by E."""


@dataclass
class EvalRow:
    """Wall time of one cell's evaluation episodes of the shipped agent."""

    evaluator: str
    """legacy (one after another, the committed cells) or lockstep, with its environments stepped inline or
    async (each in a process of its own)."""
    episodes: int
    seconds: float
    """Whole evaluation."""
    plan_seconds: float
    """Planning part (lockstep only; legacy does not split its time)."""
    env_seconds: float
    """Environment stepping and resets (lockstep only)."""
    mean_return: float


@dataclass
class CellRow:
    """Wall time of one whole benchmark cell (latent prunable), computed by a fresh worker of its suite."""

    suite: str
    method: str
    level: float
    seed: int
    evaluator: str
    """legacy (the committed cells) or lockstep: evaluation, calibration rollouts and grid scores."""
    threads: int
    """torch intra-op threads."""
    seconds: float
    """The whole cell, as its row's cell_seconds (calibration rollouts of the fresh worker included)."""
    search_seconds: float
    """The pruning search alone (grid: its candidates' evaluation episodes included)."""
    metric: float


def measure_cell(suite_name: str, method: str, level: float, evaluator: str, seed: int = 0) -> CellRow:
    """Compute one cell of a TD-MPC suite (latent prunable) with `evaluator`, in a fresh worker, as `bench`
    would; nothing is stored."""
    suite = load_suite(suite_name, methods=[method])
    suite = replace(suite, model_options={**suite.model_options, "evaluator": evaluator})
    row, _ = Worker.create(suite).run(Cell(suite.model, method, True, level, seed))
    result = CellRow(suite_name, method, level, seed, evaluator, torch.get_num_threads(), row["cell_seconds"],
                     row["search_seconds"], row["metric"])
    print(result)
    return result


def measure_cells(specs: list[str], threads: int,
                  on_pair: Callable[[list[CellRow]], None] = lambda rows: None) -> list[CellRow]:
    """Each `suite:method:level` cell with the legacy evaluator, then with lock-step, on `threads` threads;
    `on_pair(rows so far)` after each cell's pair."""
    torch.set_num_threads(threads)
    rows: list[CellRow] = []
    for spec in specs:
        suite_name, method, level = spec.split(":")
        rows += [measure_cell(suite_name, method, float(level), evaluator) for evaluator in ("legacy", "lockstep")]
        on_pair(rows)
    return rows


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2, device: str = "cpu") -> float:
    """Median wall time of `fn` in milliseconds (CUDA work synchronised on a CUDA `device`)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure_batches(cfg: TDMPCConfig, task: str, episodes: list[int], repeats: int, device: str = "cpu",
                    mode: str = "eager") -> list[BatchRow]:
    """Plan ms per action at each E in `episodes`: E one-observation plans against one plan of E observations
    (late in training: full horizon), eval mode, with the current thread count."""
    env = make_env(task, seed=0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = TDMPC(cfg, obs_dim, act_dim, device, plan_mode=mode)
    late = cfg.horizon_schedule_steps + cfg.std_schedule_steps
    obs = torch.stack([torch.as_tensor(env.reset(seed=i)[0], dtype=torch.float32) for i in range(max(episodes))])
    single = TDMPC(cfg, obs_dim, act_dim, device)
    single.model = agent.model
    single_ms = median_ms(lambda: single.plan(obs[0], True, late, False), repeats, device=device)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    rows = []
    for count in episodes:
        batch = obs[:count].to(device)
        batched = median_ms(lambda: agent.plan(batch, True, late, False), max(repeats // count, 3), device=device)
        rows.append(BatchRow(name, torch.get_num_threads(), mode, count, single_ms, batched / count))
        print(rows[-1])
    return rows


def measure_evaluation(task: str, episodes: int) -> list[EvalRow]:
    """One cell's evaluation of the shipped agent of `task` (seed 0 of the TD-MPC use case), one episode after
    another as the committed cells, and lock-step."""
    path = Path(f"checkpoints/tdmpc/{task}-seed1/agent.pt")
    agent, seed = load_agent(path, task=task), 10_000
    start = time.perf_counter()
    mean, _, _ = evaluate(agent, make_env(task, seed=0), episodes, seed)
    rows = [EvalRow("legacy", episodes, time.perf_counter() - start, float("nan"), float("nan"), mean)]
    for stepping in ("inline", "async"):
        evaluator = LockstepEvaluator(lambda: make_env(task, seed=0), stepping=stepping)
        evaluator.envs(episodes) if stepping == "inline" else evaluator.vector_env(episodes)  # made before the clock
        start = time.perf_counter()
        result = evaluator.run(agent, episodes, seed)
        rows.append(EvalRow(f"lockstep, {stepping} env steps", episodes, time.perf_counter() - start,
                            result.plan_seconds, result.env_seconds, result.mean))
        evaluator.close()
    print(*rows, sep="\n")
    return rows


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Measured fp32 matmul rate (GFLOP/s) with the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / median_ms(lambda: a @ b, repeats) / 1e6


def gflop(fn: Callable[[], object]) -> float:
    """Floating-point work of one call, in GFLOP, as counted by torch's FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def measure(name: str, cfg: TDMPCConfig, task: str, repeats: int, gflops: float, update_mode: str = "eager",
            device: str = "cpu") -> SpeedRow:
    """Time planning, updating and stepping the environment for one configuration (FLOPs of eager calls)."""
    env = make_env(task, seed=0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    repeat = env.dmc_spec.action_repeat
    length = PHYSICS_STEPS_PER_EPISODE // repeat
    agent = TDMPC(cfg, obs_dim, act_dim, device, update_mode=update_mode)
    buffer = ReplayBuffer(obs_dim, act_dim, 10 * length, cfg.horizon, device=device)
    for _ in range(10):
        buffer.add(torch.randn(length + 1, obs_dim), torch.rand(length, act_dim) * 2 - 1, torch.rand(length))
    late = cfg.horizon_schedule_steps + cfg.std_schedule_steps
    obs, _ = env.reset(seed=0)
    plan = lambda: agent.plan(obs, step=late, t0=False)
    update = lambda: agent.update(buffer, 1)
    action = np.zeros(act_dim, np.float32)
    env_ms = median_ms(lambda: env.step(action), 50)
    plan_ms, update_ms = median_ms(plan, repeats, device=device), median_ms(update, max(repeats // 2, 3), device=device)
    eager = TDMPC(cfg, obs_dim, act_dim, device, plan_mode="eager", update_mode="eager")
    plan_gf = gflop(lambda: eager.plan(obs, step=late, t0=False))
    update_gf = gflop(lambda: eager.update(buffer, 1))
    per_step = plan_ms + update_ms + env_ms
    return SpeedRow(name, sum(p.numel() for p in agent.model.parameters()), plan_ms, update_ms, env_ms,
                    repeat * 1e3 / per_step, 1e5 / repeat * per_step / 6e4, plan_gf, update_gf,
                    plan_gf / gflops * 1e3, update_gf / gflops * 1e3)


def _yes_no(flag: bool | None) -> str:
    if flag is None:
        return "not recorded"
    return "yes" if flag else "no (bf16 Linears run as fp32 matmuls of bf16-rounded values)"


def cells_markdown(cells: list[CellRow], meta: dict) -> list[str]:
    """The whole-cell table: each cell with the legacy evaluator and lock-step, and their ratio."""
    lines = ["", "## Whole cells", "",
             f"Each cell (latent prunable) computed as `ctrlprune bench` computes it, by a fresh worker (so its "
             f"calibration rollouts are included), with the legacy evaluator (the committed cells) and then with "
             f"lock-step, {cells[0].threads} torch thread(s), one cell at a time (load average before the cells: "
             f"{meta.get('cells_load', '?')}). Ratio below 1: lock-step is faster.", "",
             "| suite | method | rho | seed | legacy s | lock-step s | ratio | legacy search s | lock-step search s "
             "| legacy return | lock-step return |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for old, new in zip(cells[::2], cells[1::2]):
        lines.append(f"| {old.suite} | {old.method} | {old.level:g} | {old.seed} | {old.seconds:.0f} | "
                     f"{new.seconds:.0f} | {new.seconds / old.seconds:.2f} | {old.search_seconds:.0f} | "
                     f"{new.search_seconds:.0f} | {old.metric:.1f} | {new.metric:.1f} |")
    return lines


def to_markdown(rows: list[SpeedRow], meta: dict, batches: list[BatchRow] = (),
                evaluations: list[EvalRow] = (), cells: list[CellRow] = ()) -> str:
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
             "assume one plan and one update per agent step and no evaluation. A config is preset/precision/update "
             "mode (eager, or compile: torch.compile); FLOPs are counted on eager calls. Medians; on a shared machine "
             f"they vary with load (load average at start: {meta['load']}).", "",
             *(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] if rows else ["(no presets timed)"])]
    for r in rows:
        lines.append(f"| {r.config} | {r.params:,} | {r.plan_ms:.1f} | {r.update_ms:.1f} | {r.env_ms:.2f} | "
                     f"{r.env_steps_per_s:.0f} | {r.minutes_per_100k:.1f} | {r.plan_gflop:.2f} | "
                     f"{r.update_gflop:.2f} | {r.plan_roofline_ms:.1f} | {r.update_roofline_ms:.1f} |")
    if batches:
        lines += ["", "## Batched planning", "",
                  f"Plan ms per action, {meta['batch_config']}, eval mode, full horizon: E one-observation plans "
                  "(the path of the committed cells; the same time per action at every E) against one plan of E "
                  "observations. Ratio below 1: the batched plan is faster.", "",
                  "| device | threads | mode | E | one-observation ms / action | batched ms / action | ratio |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {b.device} | {b.threads} | {b.mode} | {b.episodes} | {b.single_ms:.2f} | {b.batched_ms:.3f} | "
                  f"{b.batched_ms / b.single_ms:.2f} |" for b in batches]
    lines += ["", meta.get("cuda_note", "")]
    if evaluations:
        lines += ["", "## One cell's evaluation", "",
                  f"{evaluations[0].episodes} evaluation episodes of the shipped {meta['task']} agent (seed 0 of "
                  "the use case), one after another (legacy, the committed cells) and lock-step (one batched plan "
                  "per step), its environments stepped inline (in this process, one after another) or async (each in a "
                  "process of its own, all at once); dm_control stepping is the env share.", "",
                  "| evaluator | episodes | seconds | plan s | env s | mean return |", "|---|---|---|---|---|---|"]
        lines += [f"| {e.evaluator} | {e.episodes} | {e.seconds:.1f} | {e.plan_seconds:.1f} | {e.env_seconds:.1f} | "
                  f"{e.mean_return:.1f} |" for e in evaluations]
    if cells:
        lines += cells_markdown(cells, meta)
    return "\n".join(lines) + "\n"


def write_report(out: Path, rows: list[SpeedRow], meta: dict, batches: list[BatchRow],
                 evaluations: list[EvalRow], cells: list[CellRow]) -> str:
    """Write the report's .md and .json (again after each timed cell, so a long run keeps what it measured);
    returns the markdown."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = to_markdown(rows, meta, batches, evaluations, cells)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows],
                                                    "batches": [asdict(b) for b in batches],
                                                    "evaluations": [asdict(e) for e in evaluations],
                                                    "cells": [asdict(c) for c in cells]}, indent=1))
    return text


def main(argv: list[str] | None = None) -> None:
    """Measure and write results/tdmpc_speed.md and .json."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tdmpc_speed", description=__doc__)
    ap.add_argument("--task", default="cartpole-swingup")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20, help="timed plans (updates: half)")
    ap.add_argument("--configs", default="cpu/fp32,cpu/bf16,upstream/fp32,upstream/bf16",
                    help="comma-separated preset/precision[/update mode] (update mode: eager, the default, or "
                         "compile)")
    ap.add_argument("--batches", default="1,10,48", help="comma-separated E of the batched-planning table")
    ap.add_argument("--batch-threads", default="1,2", help="thread counts of the batched-planning table")
    ap.add_argument("--batch-config", default="cpu/fp32", help="preset/precision of the batched-planning table")
    ap.add_argument("--compile", action="store_true", help="also time the batched plan and the update (batch config) under torch.compile on the CPU")
    ap.add_argument("--eval-episodes", type=int, default=10, help="episodes of the evaluation table (0: skip it)")
    ap.add_argument("--cells", default="tdmpc-walker-walk:gradient:0.5,tdmpc-walker-walk:grid:0.3",
                    help="comma-separated suite:method:level whole cells (latent prunable, seed 0) to time with "
                         "both evaluators ('': none)")
    ap.add_argument("--cell-threads", type=int, default=CELL_THREADS,
                    help="torch threads of the whole cells (default: those of a `ctrlprune bench` worker)")
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
    meta = {"command": "python -m benchmarks.tdmpc_speed " + shlex.join(flags),
            "nproc": os.cpu_count(), "threads": args.threads, "task": args.task,
            "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "gflops": gflops,
            "gflops_by_threads": rates,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()), **machine_info()}
    configs = [f"{c}/eager" if c.count("/") == 1 else c for c in filter(None, args.configs.split(","))]
    configs += [f"{args.batch_config}/compile"] * args.compile
    if torch.cuda.is_available():
        configs += [f"{args.batch_config}/compile/cuda"]
    rows = []
    for item in configs:
        name, precision, mode, device = (item.split("/") + ["cpu"])[:4]
        rows.append(measure(item, replace(preset(name), precision=precision), args.task,
                            args.repeats if name != "upstream" else max(args.repeats // 4, 3), gflops, mode, device))
        print(rows[-1])
    name, precision = args.batch_config.split("/")
    batch_cfg, counts = replace(preset(name), precision=precision), [int(e) for e in args.batches.split(",")]
    meta["batch_config"] = args.batch_config
    batches: list[BatchRow] = []
    for threads in (int(n) for n in filter(None, args.batch_threads.split(","))):
        torch.set_num_threads(threads)
        batches += measure_batches(batch_cfg, args.task, counts, args.repeats)
        if args.compile:
            batches += measure_batches(batch_cfg, args.task, counts, args.repeats, mode="compile")
    torch.set_num_threads(args.threads)
    if torch.cuda.is_available():
        meta["cuda_note"] = f"CUDA: {torch.cuda.get_device_name(0)}."
        batches += measure_batches(batch_cfg, args.task, sorted({*counts, 16, 64, 256}), args.repeats, "cuda", "graphs")
    else:
        meta["cuda_note"] = "No CUDA device was available on this machine: no GPU rows."
    evaluations = measure_evaluation(args.task, args.eval_episodes) if args.eval_episodes else []
    out = Path(args.out)
    save = lambda cells: write_report(out, rows, meta, batches, evaluations, cells)
    save([])
    meta["cells_load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cells = measure_cells(list(filter(None, args.cells.split(","))), args.cell_threads, save)
    torch.set_num_threads(args.threads)
    text = save(cells)
    print(text)


if __name__ == "__main__":
    main()
