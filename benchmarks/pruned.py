"""Pruned models on disk without pickled code: the dense checkpoint's hash, the recipe, and the weights.

A file is a `kind="pruned"` ctrlprune checkpoint (`agents.checkpoint`, read with `weights_only=True`):

    config      model, method, target, seed, latent setting, dense checkpoint path and sha256, and the
                search's achieved sparsity, parameters and widths
    history     torch-pruning history, plain [module name, is_out_channels, [indices]] lists ([] for masks)
    state_dict  the pruned weights (mask methods: `weight_orig` + `weight_mask` per masked layer)
    digest      sha256 over config, history and weights, so a changed byte is refused (a checksum, not a
                signature: a hand-made file can carry a matching one, so the structure is checked too)

Loading checks the structure (tensors, history entries, width labels), rebuilds the dense model through its
use case, checks the dense checkpoint's identity (`agents.checkpoint.checkpoint_identity`), replays the
history on a dependency graph traced like the pruning problem (or re-applies the masks with
`torch.nn.utils.prune.custom_from_mask`), checks every shape and loads the weights.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from agents.checkpoint import CheckpointError, checkpoint_identity, load_checkpoint, save_checkpoint
from benchmarks.usecases.base import UseCase, get_usecase
from pruning import PruneResult, count_params, replay_history, weight_masks
from pruning.sparsity import out_channels

KIND = "pruned"
CONFIG_TYPES: dict[str, type | tuple[type, ...]] = {
    "model": str, "method": str, "target": float, "seed": int, "latent_prunable": bool,
    "dense_checkpoint": str, "dense_sha256": str, "masked": bool, "achieved": float, "params": int,
    "widths": dict, "eps": float,
}
"""Every config field a pruned-model file must hold, with its type."""


@dataclass
class PrunedModel:
    """A pruned model read back from disk, with its use case and the facts it was saved with."""

    model: nn.Module
    usecase: UseCase
    dense: nn.Module
    config: dict[str, Any]

    @property
    def sparsity(self) -> float:
        """Physically pruned: measured from parameter counts; masks: the effective sparsity saved with them."""
        if self.config["masked"]:
            return float(self.config["achieved"])
        return 1.0 - count_params(self.model) / count_params(self.dense)

    @property
    def params(self) -> int:
        return int(self.config["params"]) if self.config["masked"] else count_params(self.model)

    @property
    def widths(self) -> dict[str, int]:
        """Kept width per group read off the model (its root layer's outputs); masks: the widths saved with them."""
        if self.config["masked"]:
            return dict(self.config["widths"])
        return {label: out_channels(self.model.get_submodule(label)) for label in self.config["widths"]}

    def __repr__(self) -> str:
        c = self.config
        return (f"PrunedModel({c['model']}, {c['method']}, target={c['target']}, seed={c['seed']}, "
                f"sparsity={self.sparsity:.4f}, params={self.params}, masked={c['masked']})")


def plain_history(history: list) -> list[list]:
    """torch-pruning history as [str, bool, [int, ...]] lists (safe to store, replayable)."""
    return [[str(name), bool(is_out), [int(i) for i in idxs]] for name, is_out, idxs in history]


def _digest(config: dict[str, Any], history: list, state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256(json.dumps([config, history], sort_keys=True).encode())
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_pruned(path: str | Path, usecase: UseCase, result: PruneResult, seed: int, latent_prunable: bool,
                eps: float) -> Path:
    """Write `result.model` with everything needed to rebuild it from the use case's dense checkpoint."""
    config = {
        "model": usecase.name, "method": result.method, "target": float(result.target), "seed": int(seed),
        "latent_prunable": bool(latent_prunable), "dense_checkpoint": str(usecase.checkpoint),
        "dense_sha256": checkpoint_identity(usecase.checkpoint), "masked": bool(result.masked),
        "achieved": float(result.achieved), "params": int(result.params),
        "widths": {str(k): int(v) for k, v in result.widths.items()}, "eps": float(eps),
    }
    history = plain_history(result.history)
    state = {k: v.detach().clone() for k, v in result.model.state_dict().items()}
    return save_checkpoint(path, KIND, config, history=history, state_dict=state,
                           digest=_digest(config, history, state))


def _checked_blob(path: Path) -> dict[str, Any]:
    blob = load_checkpoint(path, KIND, hint="ctrlprune prune --model ae --method gradient --sparsity 0.5 --out FILE")
    config, history, state = blob.get("config"), blob.get("history"), blob.get("state_dict")
    if not isinstance(config, dict) or not isinstance(history, list) or not isinstance(state, dict):
        raise CheckpointError(f"{path} lacks its config, history or state_dict")
    bad = [k for k, kind in CONFIG_TYPES.items() if not isinstance(config.get(k), kind)]
    if bad:
        raise CheckpointError(f"{path} has missing or mistyped config field(s) {bad}")
    _check_structure(path, config, history, state)
    try:
        digest = _digest(config, history, state)
    except (TypeError, ValueError) as err:  # config or history holding something JSON cannot write
        raise CheckpointError(f"{path}: config or history is not plain data ({err})") from None
    if blob.get("digest") != digest:
        raise CheckpointError(f"{path} was modified after it was saved (content digest mismatch)")
    return blob


def _check_structure(path: Path, config: dict[str, Any], history: list, state: dict) -> None:
    """Refuse contents of the wrong shape before anything uses them (the digest is only a checksum: a
    hand-made file can carry a matching one)."""
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: state_dict must map names to tensors")
    if not all(_is_step(step) for step in history):
        raise CheckpointError(f"{path}: history entries must be [module name, is_out_channels, [indices]]")
    if not all(isinstance(k, str) and _is_int(v) and v >= 0 for k, v in config["widths"].items()):
        raise CheckpointError(f"{path}: widths must map group labels to non-negative integers")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_step(step: Any) -> bool:
    return (isinstance(step, (list, tuple)) and len(step) == 3 and isinstance(step[0], str)
            and isinstance(step[1], bool) and isinstance(step[2], (list, tuple))
            and all(_is_int(i) and i >= 0 for i in step[2]))


def _check_width_labels(path: Path, model: nn.Module, config: dict[str, Any]) -> None:
    """Every width label must name a layer of the rebuilt model that has weights."""
    layers = {name for name, module in model.named_modules() if isinstance(getattr(module, "weight", None), torch.Tensor)}
    unknown = sorted(set(config["widths"]) - layers)
    if unknown and not config["masked"]:
        raise CheckpointError(f"{path}: widths name layers the model does not have: {unknown[:4]}")


def _dense_usecase(path: Path, config: dict[str, Any], **options: Any) -> UseCase:
    dense_path = Path(config["dense_checkpoint"])
    if not dense_path.is_file():
        raise CheckpointError(f"{path} was pruned from {dense_path}, which does not exist")
    if checkpoint_identity(dense_path) != config["dense_sha256"]:
        raise CheckpointError(f"{path} was pruned from another version of {dense_path} (sha256 differs)")
    return get_usecase(config["model"], str(dense_path), **options)


def _apply_masks(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    for layer, mask in weight_masks(state).items():
        torch_prune.custom_from_mask(model.get_submodule(layer), "weight", mask)


def _replay(model: nn.Module, usecase: UseCase, config: dict[str, Any], history: list) -> None:
    problem = usecase.problem(model, config["seed"], config["latent_prunable"])
    replay_history(model, history, problem.example_inputs, problem.forward_fn)


def _check_shapes(path: Path, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in state.items()}
    if expected != stored:
        diff = sorted(set(expected) ^ set(stored)) or [k for k in expected if expected[k] != stored[k]]
        raise CheckpointError(f"{path}: the rebuilt model does not match the stored weights at {diff[:4]}")


def load_pruned(path: str | Path, **options: Any) -> PrunedModel:
    """Rebuild a pruned model saved by `save_pruned`; CheckpointError on any mismatch or damage."""
    path = Path(path)
    blob = _checked_blob(path)
    config, history, state = blob["config"], blob["history"], blob["state_dict"]
    usecase = _dense_usecase(path, config, **options)
    dense = usecase.load()
    model = copy.deepcopy(dense)
    try:
        if config["masked"]:
            _apply_masks(model, state)
        elif history:
            _replay(model, usecase, config, history)
    except (AttributeError, IndexError, KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot rebuild the pruned model ({type(err).__name__}: {err})") from err
    _check_shapes(path, model, state)
    _check_width_labels(path, model, config)
    model.load_state_dict(state)
    return PrunedModel(model.eval(), usecase, dense, config)

