"""Agent checkpoints (shipped weights) and resume states, as plain dicts loaded with weights_only."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from agents.tdmpc.agent import TDMPC
from agents.tdmpc.config import TDMPCConfig

FORMAT_VERSION = 1
AGENT_KIND = "ctrlprune/tdmpc-agent"
RESUME_KIND = "ctrlprune/tdmpc-resume"


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename over `path` (never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _read(path: Path, kind: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{path} is truncated or corrupt and cannot be loaded: {err}") from err
    if not isinstance(data, dict) or data.get("kind") != kind:
        found = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} is not a {kind} checkpoint (found {found!r})")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format version {data.get('version')}, expected {FORMAT_VERSION}")
    return data


def _check_match(path: Path, data: dict[str, Any], task: str | None, cfg: TDMPCConfig | None) -> None:
    if task is not None and data["task"] != task:
        raise ValueError(f"{path} was trained on task {data['task']!r}, not {task!r}")
    saved = TDMPCConfig.from_dict(data["config"]).to_dict()
    if cfg is not None and saved != cfg.to_dict():
        asked = cfg.to_dict()
        diff = {k: (saved.get(k), v) for k, v in asked.items() if saved.get(k) != v}
        raise ValueError(f"{path} config differs from the one asked for (saved, asked): {diff}")


def _header(kind: str, agent: TDMPC, task: str) -> dict[str, Any]:
    return {"kind": kind, "version": FORMAT_VERSION, "task": task, "config": agent.cfg.to_dict(),
            "obs_dim": agent.obs_dim, "act_dim": agent.act_dim, "step": agent.step}


def save_agent(path: Path, agent: TDMPC, task: str) -> None:
    """Small shipped checkpoint: model weights, config, task, dims and agent steps trained."""
    atomic_save({**_header(AGENT_KIND, agent, task), "model": agent.model.state_dict()}, path)


def load_agent(path: Path, task: str | None = None, cfg: TDMPCConfig | None = None) -> TDMPC:
    """Rebuild a TDMPC agent (target = model) from `save_agent`; refuses a task or config mismatch."""
    data = _read(path, AGENT_KIND)
    _check_match(path, data, task, cfg)
    agent = TDMPC(TDMPCConfig.from_dict(data["config"]), data["obs_dim"], data["act_dim"])
    agent.model.load_state_dict(data["model"])
    agent.target.load_state_dict(data["model"])
    agent.step = int(data["step"])
    return agent


def save_resume(path: Path, agent: TDMPC, task: str, extra: dict[str, Any]) -> None:
    """Everything needed to continue training: agent and optimiser states plus `extra`
    (buffer, counters, RNG state, eval history; tensors and primitives only)."""
    atomic_save({**_header(RESUME_KIND, agent, task), "agent": agent.state_dict(), **extra}, path)


def load_resume(path: Path, task: str, cfg: TDMPCConfig) -> dict[str, Any]:
    """The dict written by `save_resume`, after checking task and config."""
    data = _read(path, RESUME_KIND)
    _check_match(path, data, task, cfg)
    return data
