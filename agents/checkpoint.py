"""Safe checkpoints: plain dicts of tensors and primitive metadata, written atomically.

Every file is a dict `{"format": "ctrlprune", "kind": ..., "version": ..., "config": {...}, ...}` saved
with `torch.save` and read back with `torch.load(weights_only=True)`, so loading never runs pickled code.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "ctrlprune"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match what was asked for."""


def save_checkpoint(path: str | Path, kind: str, config: dict[str, Any], **payload: Any) -> Path:
    """Write `payload` (tensors, state dicts, numbers, strings) atomically to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": FORMAT, "kind": kind, "version": VERSION, "config": config, **payload}
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        torch.save(blob, tmp)
    os.replace(tmp.name, path)
    return path


def load_checkpoint(path: str | Path, kind: str, hint: str = "") -> dict[str, Any]:
    """Read a checkpoint of the given kind, refusing anything else with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}." + (f" Create it with: {hint}" if hint else ""))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, bad magic number, ...
        raise CheckpointError(f"{path} is not a readable ctrlprune checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ctrlprune checkpoint")
    if blob.get("kind") != kind:
        raise CheckpointError(f"{path} holds a '{blob.get('kind')}' checkpoint, expected '{kind}'")
    if blob.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {blob.get('version')}, this code reads {VERSION}")
    return blob


def check_config(path: str | Path, stored: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a checkpoint whose config differs from the expected one, naming the fields."""
    diff = {k: (stored.get(k), v) for k, v in expected.items() if stored.get(k) != v}
    if diff:
        details = ", ".join(f"{k}: file has {a!r}, expected {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"{path} was made for another config ({details})")
