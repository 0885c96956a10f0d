"""Summarise trained runs into checkpoints/tdmpc/README.md's table: `python -m agents.tdmpc.report`."""
from __future__ import annotations

import argparse
import logging
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from agents.tdmpc.train import LOG_FILE, RESUME_FILE, action_repeat
from envs.registry import make_env


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

    @property
    def finished(self) -> bool:
        """Whether the run reached its target."""
        return self.env_steps >= self.target_steps


def summarize(run: Path) -> RunSummary | None:
    """Read a run folder (None when it holds no resume state yet)."""
    resume, log = run / RESUME_FILE, run / LOG_FILE
    if not resume.exists() or not log.exists():
        return None
    state = torch.load(resume, map_location="cpu", weights_only=True)
    text = log.read_text()
    command = re.findall(r"(python -m agents\.tdmpc\.train [^|]*?) \|", text)[-1]
    evals = re.findall(r"eval at (\d+) env steps: return ([\d.]+) \+- ([\d.]+)", text)
    final = f"{float(evals[-1][1]):.1f} ± {float(evals[-1][2]):.1f} (at {int(evals[-1][0]):,})" if evals else "-"
    repeat = action_repeat(make_env(state["task"]))
    return RunSummary(state["task"], int(state["seed"]), state["progress"]["step"] * repeat,
                      int(re.search(r"--steps (\d+)", command).group(1)), final,
                      float(state["progress"]["wall"]), state["config"].get("precision", "fp32"),
                      *_median_timings(run / "tb"), command)


def _median_timings(logdir: Path) -> tuple[float, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # resumed runs add a file per session
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    return tuple(statistics.median([e.value for e in events.Scalars(t)]) if t in tags else float("nan")
                 for t in ("perf/plan_ms", "perf/update_ms"))


def table(runs: list[RunSummary]) -> str:
    """Markdown table of the runs."""
    lines = ["| task | seed | env steps | status | final eval return (10 episodes) | wall time | precision "
             "| plan ms | update ms | command |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        status = "finished" if r.finished else f"partial ({r.env_steps / r.target_steps:.0%})"
        lines.append(f"| {r.task} | {r.seed} | {r.env_steps:,} | {status} | {r.final_return} | "
                     f"{r.wall_s / 60:.1f} min | {r.precision} | {r.plan_ms:.1f} | {r.update_ms:.1f} | `{r.command}` |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the table of every run under --root."""
    ap = argparse.ArgumentParser(prog="python -m agents.tdmpc.report", description=__doc__)
    ap.add_argument("--root", default="checkpoints/tdmpc")
    args = ap.parse_args(argv)
    runs = [s for d in sorted(Path(args.root).iterdir()) if d.is_dir() and (s := summarize(d))]
    print(table(runs))


if __name__ == "__main__":
    main()
