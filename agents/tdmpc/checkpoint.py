"""Agent checkpoints (shipped weights) and resume states, as plain dicts loaded with weights_only.

Writing (with the content digest), safe loading and the kind/version/digest/finite checks are those of
`agents.checkpoint`; the on-disk layout is top-level kind, version, task, env, config, obs_dim, act_dim, step,
weights and `content_sha256`. `env` says how to rebuild the environment: task, action_repeat and the plugins
that register the task (absent in checkpoints written before it was recorded: the task's defaults apply).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agents.checkpoint import CheckpointError, atomic_save, check_config, load_checkpoint, save_sealed
from agents.tdmpc.agent import TDMPC
from agents.tdmpc.config import TDMPCConfig
from agents.tdmpc.model import warn_if_emulated_bf16
from envs.registry import UnknownTaskError, make_env

__all__ = ["AGENT_KIND", "FORMAT_VERSION", "RESUME_KIND", "CheckpointError", "agent_env", "atomic_save", "load_agent",
           "make_agent_env",
           "load_resume", "save_agent", "save_resume"]

FORMAT_VERSION = 1
AGENT_KIND = "ctrlprune/tdmpc-agent"
RESUME_KIND = "ctrlprune/tdmpc-resume"


def _read(path: Path, kind: str, task: str | None, cfg: TDMPCConfig | None) -> dict[str, Any]:
    """The checkpoint of `kind` at `path`, refused if it was made for another task or config."""
    data = load_checkpoint(path, kind, version=FORMAT_VERSION)
    if task is not None and data["task"] != task:
        raise CheckpointError(f"{path} was trained on task {data['task']!r}, not {task!r}")
    if cfg is not None:
        check_config(path, TDMPCConfig.from_dict(data["config"]).to_dict(), cfg.to_dict())
    return data


def _header(kind: str, agent: TDMPC, task: str, env: dict[str, Any] | None) -> dict[str, Any]:
    return {"kind": kind, "version": FORMAT_VERSION, "task": task, **({"env": env} if env else {}),
            "config": agent.cfg.to_dict(),
            "obs_dim": agent.obs_dim, "act_dim": agent.act_dim, "step": agent.step}


def save_agent(path: Path, agent: TDMPC, task: str, env: dict[str, Any] | None = None) -> None:
    """Small shipped checkpoint: model weights, config, task, environment (`env`), dims and agent steps trained."""
    save_sealed({**_header(AGENT_KIND, agent, task, env), "model": agent.model.state_dict()}, path)


def load_agent(path: Path, task: str | None = None, cfg: TDMPCConfig | None = None,
               device: str | torch.device = "cpu") -> TDMPC:
    """Rebuild a TDMPC agent (target = model) on `device` from `save_agent`, whichever device saved it;
    refuses a task or config mismatch."""
    data = _read(path, AGENT_KIND, task, cfg)
    agent = TDMPC(TDMPCConfig.from_dict(data["config"]), data["obs_dim"], data["act_dim"], device)
    agent.model.load_state_dict(data["model"])
    agent.target.load_state_dict(data["model"])
    agent.step = int(data["step"])
    warn_if_emulated_bf16(agent.cfg.precision, f"the agent in {path}")
    return agent


def save_resume(path: Path, agent: TDMPC, task: str, extra: dict[str, Any], env: dict[str, Any] | None = None) -> None:
    """Everything needed to continue training: agent and optimiser states plus `extra`
    (buffer, counters, RNG state, eval history; tensors and primitives only)."""
    save_sealed({**_header(RESUME_KIND, agent, task, env), "agent": agent.state_dict(), **extra}, path)


def agent_env(path: Path) -> dict[str, Any]:
    """The `env` record of an agent checkpoint ({} when it predates the record)."""
    return dict(_read(path, AGENT_KIND, None, None).get("env", {}))


def make_agent_env(path: Path, task: str, seed: int = 0):
    """The environment the agent at `path` was trained on: `task` with the recorded action repeat (the task's
    default when none is recorded or there is no file yet); an unknown task names the plugins that register it."""
    env = agent_env(path) if path.is_file() else {}
    try:
        return make_env(task, seed, env.get("action_repeat"))
    except UnknownTaskError as err:
        if not env.get("plugins"):
            raise
        flags = " ".join(f"--plugin {m}" for m in env["plugins"])
        raise UnknownTaskError(f"unknown task {task!r}: {path} was trained on it with {flags}; "
                               f"pass the same: ctrlprune {flags} <command> ...") from err


def load_resume(path: Path, task: str, cfg: TDMPCConfig) -> dict[str, Any]:
    """The dict written by `save_resume`, after checking task and config."""
    return _read(path, RESUME_KIND, task, cfg)
