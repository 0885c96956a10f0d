"""Summarise trained runs into checkpoints/tdmpc/README.md's table and the issue's targets into results/:
`python -m agents.tdmpc.report --readme checkpoints/tdmpc/README.md --targets results/tdmpc_agents.md`."""
from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from agents.checkpoint import load_checkpoint
from agents.tdmpc.checkpoint import FORMAT_VERSION, RESUME_KIND
from agents.tdmpc.train import LOG_FILE, RESUME_FILE
from envs.registry import action_repeat_of, make_env


PUBLISHED_100K = {
    "cartpole-swingup": (858.8, 6.1), "reacher-easy": (893.2, 93.8), "walker-walk": (963.0, 5.3),
    "cheetah-run": (602.8, 53.5), "finger-spin": (949.0, 35.9), "cup-catch": (976.8, 4.5),
}
"""Published TD-MPC return at 100k env steps, (mean, population std) over 5 seeds (nicklashansen/tdmpc
results/<task>.csv); the shipped agents aim at mean - std or more."""
CARTPOLE_RETURN, CARTPOLE_MINUTES, PLAN_MS = 850.0, 5.0, 8.0
"""Targets: cartpole-swingup mean return at 100k env steps, its training wall time, planning ms per action."""


@dataclass
class RunSummary:
    """One run folder, read from its files."""

    task: str
    """Task name."""
    seed: int
    """Training seed."""
    env_steps: int
    """Environment steps trained (from the resume state)."""
    target_steps: int
    """Environment steps asked for (from the last command)."""
    final_return: str
    """Last evaluation: mean +- std over its episodes, or '-'."""
    wall_s: float
    """Training wall time over all sessions, seconds."""
    precision: str
    """Matmul precision of the run's config."""
    plan_ms: float
    """Median over training episodes of the median planning time per action (nan if none logged)."""
    update_ms: float
    """Median over training episodes of the mean time per update (nan if none logged)."""
    command: str
    """The command that trains or resumes this run."""
    final_mean: float = float("nan")
    """Mean return of the last evaluation (nan if none)."""

    @property
    def finished(self) -> bool:
        """Whether the run reached its target."""
        return self.env_steps >= self.target_steps


def summarize(run: Path) -> RunSummary | None:
    """Read a run folder (None when it holds no resume state yet)."""
    resume, log = run / RESUME_FILE, run / LOG_FILE
    if not resume.exists() or not log.exists():
        return None
    state = load_checkpoint(resume, RESUME_KIND, version=FORMAT_VERSION)
    text = log.read_text()
    command = re.findall(r"(python -m agents\.tdmpc\.train [^|]*?) \|", text)[-1]
    evals = re.findall(r"eval at (\d+) env steps: return ([\d.]+) \+- ([\d.]+)", text)
    final = f"{float(evals[-1][1]):.1f} ± {float(evals[-1][2]):.1f} (at {int(evals[-1][0]):,})" if evals else "-"
    repeat = state.get("env", {}).get("action_repeat") or action_repeat_of(make_env(state["task"]))
    return RunSummary(state["task"], int(state["seed"]), state["progress"]["step"] * repeat,
                      int(re.search(r"--steps (\d+)", command).group(1)), final,
                      float(state["progress"]["wall"]), state["config"].get("precision", "fp32"),
                      *_median_timings(run / "tb"), command, float(evals[-1][1]) if evals else float("nan"))


def _median_timings(logdir: Path) -> tuple[float, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # resumed runs add a file per session
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    return tuple(statistics.median([e.value for e in events.Scalars(t)]) if t in tags else float("nan")
                 for t in ("perf/plan_ms", "perf/update_ms"))


def _versus_published(r: RunSummary) -> str:
    if r.task not in PUBLISHED_100K:
        return "-"
    mean, std = PUBLISHED_100K[r.task]
    floor = mean - std
    verdict = "" if r.final_mean != r.final_mean or not r.finished else (" met" if r.final_mean >= floor else " missed")
    return f"{mean} ± {std} (floor {floor:.1f}){verdict}"


def table(runs: list[RunSummary]) -> str:
    """Markdown table of the runs."""
    lines = ["| task | seed | env steps | status | final eval return (10 episodes) | published TD-MPC at 100k "
             "| wall time | precision | plan ms | update ms | command |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        status = "finished" if r.finished else f"partial ({r.env_steps / r.target_steps:.0%})"
        lines.append(f"| {r.task} | {r.seed} | {r.env_steps:,} | {status} | {r.final_return} | {_versus_published(r)} | "
                     f"{r.wall_s / 60:.1f} min | {r.precision} | {r.plan_ms:.1f} | {r.update_ms:.1f} | `{r.command}` |")
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def targets(runs: list[RunSummary], speed: dict | None) -> str:
    """Markdown table of the agent targets: return floors per task (mean over its finished runs), cartpole's
    return and training time, and the planning latency of the shipped config (from the speed benchmark)."""
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    done = [r for r in runs if r.finished and r.final_mean == r.final_mean]
    for task in sorted({r.task for r in done} & set(PUBLISHED_100K)):
        means = [r.final_mean for r in done if r.task == task]
        mean, floor = statistics.mean(means), PUBLISHED_100K[task][0] - PUBLISHED_100K[task][1]
        lines.append(f"| {task}: mean return at 100k >= {floor:.1f} (published mean - std) | "
                     f"{mean:.1f} over {len(means)} run(s) | {_verdict(mean >= floor)} |")
    cartpole = [r for r in done if r.task == "cartpole-swingup"]
    if cartpole:
        mean = statistics.mean(r.final_mean for r in cartpole)
        fastest = min(r.wall_s for r in cartpole) / 60
        lines.append(f"| cartpole-swingup: mean return >= {CARTPOLE_RETURN:.0f} | {mean:.1f} over {len(cartpole)} run(s) "
                     f"| {_verdict(mean >= CARTPOLE_RETURN)} |")
        lines.append(f"| cartpole-swingup: 100k env steps in <= {CARTPOLE_MINUTES:.0f} min | fastest run {fastest:.1f} min "
                     f"| {_verdict(fastest <= CARTPOLE_MINUTES)} |")
    for row in (speed or {}).get("rows", []):
        if row["config"].startswith("cpu/"):
            lines.append(f"| plan <= {PLAN_MS:.0f} ms per action ({row['config']}, full horizon) | {row['plan_ms']:.1f} ms "
                         f"| {_verdict(row['plan_ms'] <= PLAN_MS)} |")
    return "\n".join(lines)


def write_targets(path: Path, runs: list[RunSummary], speed_json: Path) -> None:
    """Write the targets table with the commands behind its figures."""
    speed = json.loads(speed_json.read_text()) if speed_json.is_file() else None
    source = f"`{speed['meta']['command'].strip()}` ({speed_json})" if speed else "no speed benchmark found"
    path.write_text(
        "# TD-MPC agent targets\n\n"
        "`python -m agents.tdmpc.report --targets " + str(path) + "`: returns and wall times from the shipped runs in "
        "checkpoints/tdmpc/ (each run's command is in checkpoints/tdmpc/README.md); planning latency from "
        f"{source}.\n\n{targets(runs, speed)}\n")


def main(argv: list[str] | None = None) -> None:
    """Print the table of every run under --root."""
    ap = argparse.ArgumentParser(prog="python -m agents.tdmpc.report", description=__doc__)
    ap.add_argument("--root", default="checkpoints/tdmpc")
    ap.add_argument("--readme", type=Path, help="replace the run table of this markdown file in place")
    ap.add_argument("--targets", type=Path, help="write the targets table (returns, training time, plan ms) here")
    ap.add_argument("--speed", type=Path, default=Path("results/tdmpc_speed.json"),
                    help="speed benchmark results read for the plan-latency target")
    args = ap.parse_args(argv)
    runs = [s for d in sorted(Path(args.root).iterdir()) if d.is_dir() and (s := summarize(d))]
    print(table(runs))
    if args.readme:
        replace_table(args.readme, table(runs))
    if args.targets:
        write_targets(args.targets, runs, args.speed)
        print(f"targets: {args.targets}")


def replace_table(path: Path, new_table: str) -> None:
    """Swap the markdown table that starts with `| task | seed |` in `path` for `new_table`."""
    lines = path.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| task | seed |")), None)
    if start is None:
        raise ValueError(f"{path} has no run table (a line starting with '| task | seed |')")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    path.write_text("\n".join(lines[:start] + new_table.splitlines() + lines[end:]) + "\n")


if __name__ == "__main__":
    main()
