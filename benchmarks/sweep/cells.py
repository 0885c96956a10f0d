"""The cells of a suite: which exist, how each is fingerprinted and seeded, and how to describe or time them."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from agents.checkpoint import CheckpointError, checkpoint_identity
from benchmarks.sweep.store import DENSE, Cell, fingerprint
from benchmarks.sweep.suite import Suite
from benchmarks.usecases import UseCase


def suite_cells(suite: Suite) -> list[Cell]:
    """All cells of a suite in report order, for each fine-tuning length: dense references first, then
    method x latent x level x seed."""
    cells = []
    for steps in suite.finetune_steps:
        cells += [Cell(suite.model, DENSE, True, 0.0, seed, steps) for seed in suite.seeds]
        for method in suite.methods:
            for latent in suite.latent_prunable:
                for level in suite.sparsities:
                    cells += [Cell(suite.model, method, latent, level, seed, steps) for seed in suite.seeds]
    return cells


def _checkpoint_id(path: str) -> str:
    """Short identity of the dense checkpoint's content (`checkpoint_identity`), "missing" when unreadable."""
    try:
        return checkpoint_identity(path)[:16]
    except (OSError, CheckpointError):
        return "missing"


def shared_settings(suite: Suite, usecase: UseCase) -> dict[str, Any]:
    return {"model": suite.model, "checkpoint": _checkpoint_id(usecase.checkpoint), "eps": suite.eps,
            "model_options": suite.model_options}


def cell_fingerprinter(suite: Suite, usecase: UseCase):
    """Hash of everything that decides a cell's row: checkpoint content, tolerance, options and the version of
    the use case's code the method depends on (absent when unversioned, so older cells stay valid)."""
    base = shared_settings(suite, usecase)

    def settings(cell: Cell) -> dict[str, Any]:
        options = usecase.method_options(cell.method, suite.method_options.get(cell.method))
        version = usecase.code_versions.get(cell.method)
        return {**base, "method_options": options, **({"code_version": version} if version else {}),
                **finetune_settings(suite, usecase, cell.finetune_steps)}

    return lambda cell: fingerprint(settings(cell))


def finetune_points(suite: Suite, steps: int) -> list[int]:
    """The steps before `steps` at which a cell fine-tuned for `steps` also takes the metric, ascending."""
    return sorted(point for point in suite.finetune_eval_at if point < steps)


def finetune_settings(suite: Suite, usecase: UseCase, steps: int) -> dict[str, Any]:
    """What decides a fine-tuned cell beyond its pruning: steps, curve points and the version of the use
    case's fine-tuning code; nothing for a cell that is not fine-tuned (its fingerprint stays as before)."""
    if not steps:
        return {}
    return {"finetune": {"steps": steps, "eval_at": finetune_points(suite, steps),
                         "version": usecase.finetune_version}}


def cell_seed(cell: Cell) -> int:
    """The torch seed of a cell; the same with and without fine-tuning, so both prune alike."""
    return int(hashlib.sha256(dataclasses.replace(cell, finetune_steps=0).key.encode()).hexdigest()[:8], 16)


def estimate_seconds(todo: list[Cell], done: list[dict[str, Any]]) -> tuple[float, list[str]]:
    """Cell time `todo` would take on one worker, from the mean stored `cell_seconds` of each method, latent
    setting and fine-tuning length (of the method and length alone when that setting has none); also the
    methods with no timed cell."""
    times: dict[tuple[str, bool | None, int], list[float]] = {}
    for row in done:
        seconds, steps = row.get("cell_seconds", float("nan")), row.get("finetune_steps", 0)
        if seconds == seconds:
            times.setdefault((row["method"], row["latent_prunable"], steps), []).append(seconds)
            times.setdefault((row["method"], None, steps), []).append(seconds)
    total, unknown = 0.0, []
    for cell in todo:
        known = (times.get((cell.method, cell.latent_prunable, cell.finetune_steps))
                 or times.get((cell.method, None, cell.finetune_steps)))
        if known:
            total += sum(known) / len(known)
        elif cell.method not in unknown:
            unknown.append(cell.method)
    return total, unknown


def describe_cells(cells: list[Cell]) -> list[str]:
    """One line per method, latent setting, fine-tuning length and set of seeds sharing the same levels, e.g.
    "torch-l2 (latent kept), seeds 1, 2: rho 0.1, 0.3 (4 cells)"."""
    levels: dict[tuple[str, bool, int, int], list[float]] = {}
    for cell in cells:
        levels.setdefault((cell.method, cell.latent_prunable, cell.finetune_steps, cell.seed), []).append(
            cell.target_sparsity)
    merged: dict[tuple[str, bool, int, tuple[float, ...]], list[int]] = {}
    for (method, latent, steps, seed), lvs in levels.items():
        merged.setdefault((method, latent, steps, tuple(sorted(lvs))), []).append(seed)
    lines = []
    for (method, latent, steps, lvs), seeds in merged.items():
        label = (method + ("" if latent or method == DENSE else " (latent kept)")
                 + (f" fine-tuned {steps} steps" if steps else ""))
        seed_text = ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))
        rho = ", ".join(str(lv) for lv in lvs)
        lines.append(f"{label}, {seed_text}: rho {rho} ({len(lvs) * len(seeds)} cells)")
    return lines
