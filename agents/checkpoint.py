"""Safe checkpoints: plain dicts of tensors and primitive metadata, written atomically.

Every file is a dict `{"format": "ctrlprune", "kind": ..., "version": ..., "config": {...}, ...}` saved
with `torch.save` and read back with `torch.load(weights_only=True)`, so loading never runs pickled code.
TD-MPC files (`agents.tdmpc.checkpoint`) predate the "format" key and name it in their kind instead
("ctrlprune/tdmpc-agent"); they are read by the same code.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

FORMAT = "ctrlprune"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match what was asked for."""


class CheckpointMissing(CheckpointError, FileNotFoundError):
    """No file at the checkpoint path (also a FileNotFoundError for callers that catch that)."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """`torch.save` to a temporary file next to `path`, then rename it over `path`.

    Readers see the old file or the new one, never a half-written one; concurrent writers do not collide.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_checkpoint(path: str | Path, kind: str, config: dict[str, Any], **payload: Any) -> Path:
    """Write `payload` (tensors, state dicts, numbers, strings) atomically to `path`."""
    blob = {"format": FORMAT, "kind": kind, "version": VERSION, "config": config, **payload}
    return atomic_save(blob, path)


def _is_ctrlprune(blob: Any) -> bool:
    if not isinstance(blob, dict):
        return False
    return blob.get("format") == FORMAT or str(blob.get("kind", "")).startswith(f"{FORMAT}/")


def load_checkpoint(path: str | Path, kind: str, hint: str = "", version: int = VERSION) -> dict[str, Any]:
    """Read a checkpoint of the given kind and version, refusing anything else with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointMissing(f"no checkpoint at {path}." + (f" Create it with: {hint}" if hint else ""))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, bad magic number, ...
        raise CheckpointError(f"{path} is truncated or corrupt, not a readable ctrlprune checkpoint "
                              f"({type(err).__name__}: {err})") from err
    if not _is_ctrlprune(blob):
        raise CheckpointError(f"{path} is not a ctrlprune checkpoint")
    if blob.get("kind") != kind:
        raise CheckpointError(f"{path} is not a {kind} checkpoint (it holds kind '{blob.get('kind')}', "
                              f"expected '{kind}')")
    if blob.get("version") != version:
        raise CheckpointError(f"{path} has {kind} checkpoint version {blob.get('version')}, "
                              f"this code reads version {version}")
    return blob


def check_config(path: str | Path, stored: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a checkpoint whose config differs from `expected` in any of its fields, naming them."""
    diff = {k: (stored.get(k), v) for k, v in expected.items() if stored.get(k) != v}
    if diff:
        details = ", ".join(f"{k}: file has {a!r}, expected {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"{path} config differs from the one asked for ({details})")
