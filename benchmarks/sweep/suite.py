"""Suite configs: which model, methods, sparsity levels, seeds and tolerance a sweep covers.

A suite is a TOML file (shipped ones live in `benchmarks/suites/`). Every field is checked before any
work starts; an error names the field and the valid choices.

```toml
name = "ae"
model = "ae"
methods = ["tp-magnitude", "gradient"]
sparsities = [0.1, 0.2]
seeds = [0, 1, 2]

[method_options.grid-group]
budget = 128
```

A suite may name `plugins = ["module", ...]`: modules imported before it is validated, and in every worker
process, that register its use case or methods.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from agents.device import DEVICES

SUITES_DIR = Path(__file__).parent.parent / "suites"
MAX_SEED = 2**31 - 1
"""Largest seed a suite or command may use."""


class SuiteError(ValueError):
    """A suite config is malformed; the message names the field and the valid choices."""


@dataclass(frozen=True)
class Suite:
    """One sweep: model x methods x latent setting x sparsity levels x seeds."""

    name: str
    """suite name; results go to results/<name>/"""
    model: str
    """use case (model + task), e.g. 'ae' or 'tdmpc-cartpole-swingup'"""
    methods: tuple[str, ...]
    """pruning methods, names from `ctrlprune list`"""
    sparsities: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    """target sparsities, each in [0, 1)"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """seeds of the pruning search and of the evaluation"""
    eps: float = 0.01
    """tolerance of the sparsity band |achieved - target| <= eps"""
    latent_prunable: tuple[bool, ...] = (True,)
    """whether the inter-component (latent) groups may be pruned; both settings may be listed"""
    checkpoint: str = ""
    """dense model checkpoint; empty means the use case's shipped default"""
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """per-method keyword options, e.g. {'grid-group': {'budget': 128}}"""
    model_options: dict[str, Any] = field(default_factory=dict)
    """use-case options, e.g. evaluation episodes or latency batch"""
    workers: int = 1
    """cells run in parallel processes"""
    description: str = ""
    """one line shown in the report"""
    plugins: tuple[str, ...] = ()
    """modules imported first, in every worker process too, that register the use case or methods"""
    device: str = "cpu"
    """where cells evaluate: auto (CUDA where available), cpu or cuda; recorded with each cell, not part of
    its fingerprint"""
    finetune_steps: tuple[int, ...] = (0,)
    """fine-tuning steps after pruning, each a cell of its own (0: scored as pruned); the use case says what a
    step is (TD-MPC: env steps, the autoencoder: optimiser steps); docs/FINETUNING.md"""
    finetune_eval_at: tuple[int, ...] = ()
    """steps along the fine-tuning at which the metric is also taken (the recovery curve); those at or past a
    cell's `finetune_steps` are skipped (its final score closes the curve)"""

    def __repr__(self) -> str:
        return (f"Suite({self.name!r}: {self.model}, {len(self.methods)} methods x {len(self.sparsities)} levels x "
                f"{len(self.seeds)} seeds x latent {list(self.latent_prunable)}, eps={self.eps})")


_TUPLE_TYPES = {"methods": str, "sparsities": float, "seeds": int, "latent_prunable": bool, "plugins": str,
                "finetune_steps": int, "finetune_eval_at": int}
_SCALAR_TYPES = {"name": str, "model": str, "eps": float, "checkpoint": str, "workers": int, "description": str,
                 "device": str}


def _check_scalar(key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SuiteError(f"suite field '{key}' must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _check_list(key: str, value: Any, kind: type) -> tuple:
    if not isinstance(value, list) or not value:
        raise SuiteError(f"suite field '{key}' must be a non-empty list of {kind.__name__}, got {value!r}")
    items = tuple(_check_scalar(f"{key}[{i}]", v, kind) for i, v in enumerate(value))
    if len(set(items)) != len(items):
        raise SuiteError(f"suite field '{key}' has duplicates: {list(items)}")
    return items


def _check_table(key: str, value: Any, nested: bool) -> dict:
    if not isinstance(value, dict):
        raise SuiteError(f"suite field '{key}' must be a table, got {value!r}")
    if nested and not all(isinstance(v, dict) for v in value.values()):
        raise SuiteError(f"suite field '{key}' must map method names to tables of options")
    return value


def validate_sparsity(value: float, field_name: str = "sparsity") -> float:
    """A target sparsity must lie in [0, 1)."""
    if not 0.0 <= value < 1.0:
        raise SuiteError(f"{field_name} {value} is outside [0, 1)")
    return value


def parse_suite(raw: dict[str, Any], known_models: list[str], known_methods: list[str]) -> Suite:
    """Check a raw config dict field by field and build the `Suite`."""
    valid = [f.name for f in fields(Suite)]
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise SuiteError(f"unknown suite field(s) {unknown}; valid fields: {valid}")
    missing = [k for k in ("name", "model", "methods") if k not in raw]
    if missing:
        raise SuiteError(f"suite is missing required field(s) {missing}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _TUPLE_TYPES:
            values[key] = _check_list(key, value, _TUPLE_TYPES[key])
        elif key in _SCALAR_TYPES:
            values[key] = _check_scalar(key, value, _SCALAR_TYPES[key])
        else:
            values[key] = _check_table(key, value, nested=key == "method_options")
    suite = Suite(**values)
    _check_semantics(suite, known_models, known_methods)
    return suite


def _model_known(name: str, known: list[str]) -> bool:
    """Exact names, or families listed as `prefix-<task>`."""
    family = "<task>"
    return name in known or any(k.endswith(family) and name.startswith(k[: -len(family)]) and
                                len(name) > len(k) - len(family) for k in known)


def _check_semantics(suite: Suite, known_models: list[str], known_methods: list[str]) -> None:
    if not suite.name or not suite.name.replace("-", "").replace("_", "").isalnum():
        raise SuiteError(f"suite name {suite.name!r} must be non-empty letters, digits, '-' or '_'")
    if not _model_known(suite.model, known_models):
        raise SuiteError(f"unknown model {suite.model!r}; valid models: {known_models}")
    bad = [m for m in suite.methods if m not in known_methods]
    if bad:
        raise SuiteError(f"unknown method(s) {bad}; valid methods: {known_methods}")
    bad_opts = [m for m in suite.method_options if m not in suite.methods]
    if bad_opts:
        raise SuiteError(f"method_options for {bad_opts}, which are not in methods {list(suite.methods)}")
    for i, s in enumerate(suite.sparsities):
        validate_sparsity(s, f"sparsities[{i}]")
    if not 0.0 < suite.eps < 0.5:
        raise SuiteError(f"eps {suite.eps} must lie in (0, 0.5)")
    for i, seed in enumerate(suite.seeds):
        validate_seed(seed, f"seeds[{i}]")
    if not 1 <= suite.workers <= 64:
        raise SuiteError(f"workers {suite.workers} must lie in [1, 64]")
    _check_module_names(suite.plugins)
    _check_finetune(suite)
    _check_options(suite)
    if suite.device not in DEVICES:
        raise SuiteError(f"device {suite.device!r} must be one of {list(DEVICES)}")


def _check_finetune(suite: Suite) -> None:
    """Steps are >= 0, curve points > 0, and a suite that fine-tunes names a use case that can (registered
    ones only)."""
    from benchmarks.usecases import is_known_usecase
    from benchmarks.usecases.base import UseCase, usecase_type

    bad = [k for k in suite.finetune_steps if k < 0] + [k for k in suite.finetune_eval_at if k < 1]
    if bad:
        raise SuiteError(f"finetune_steps must be >= 0 and finetune_eval_at >= 1, got {bad}")
    if any(suite.finetune_steps) and is_known_usecase(suite.model) and \
            usecase_type(suite.model).finetune is UseCase.finetune:
        raise SuiteError(f"model {suite.model!r} cannot fine-tune: finetune_steps must be [0]")


def validate_seed(value: int, field_name: str = "seed") -> int:
    """A seed must lie in [0, MAX_SEED]: the cells derive further seeds from it that must fit 64 bits."""
    if not 0 <= value <= MAX_SEED:
        raise SuiteError(f"{field_name} {value} is outside [0, {MAX_SEED}]")
    return value


def _check_options(suite: Suite) -> None:
    """Names, types and values of the method and model options, from the methods' option dataclasses and the
    use case's signature (registered ones only; a suite checked against other names skips them)."""
    from benchmarks.usecases import is_known_usecase
    from benchmarks.usecases.base import check_usecase_options
    from pruning.registry import check_method_options, list_methods

    for method, options in suite.method_options.items():
        if method in list_methods():
            try:
                check_method_options(method, options)
            except ValueError as err:
                raise SuiteError(f"method_options.{method}: {err}") from None
    if is_known_usecase(suite.model):
        try:
            check_usecase_options(suite.model, suite.model_options)
        except ValueError as err:
            raise SuiteError(f"model_options: {err}") from None


def _check_module_names(modules: Iterable[str]) -> None:
    bad = [m for m in modules if not all(part.isidentifier() for part in m.split("."))]
    if bad:
        raise SuiteError(f"plugins {bad} are not importable module names (like 'mypkg.methods')")


def import_plugins(modules: Iterable[str]) -> None:
    """Import user modules that register use cases, tasks or pruning methods (found in the working directory too)."""
    modules = list(modules)
    _check_module_names(modules)
    if modules and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise SuiteError(f"plugin {module}: cannot import it ({err})") from err


def shipped_suites() -> list[str]:
    """Names of the suites that ship with the project."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def registered_names() -> tuple[list[str], list[str]]:
    """Registered use cases and methods (plugins imported first register theirs too)."""
    from benchmarks.usecases import list_usecases
    from pruning import list_methods

    return list_usecases(), list_methods()


def load_suite(name_or_path: str, known_models: list[str] | None = None, known_methods: list[str] | None = None,
               **overrides: Any) -> Suite:
    """Load a shipped suite by name or a TOML file by path, apply `overrides`, import its plugins, and validate it.

    Without `known_models` and `known_methods`, they are the registered ones once the plugins are imported.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise SuiteError(f"no suite {name_or_path!r}; shipped suites: {shipped_suites()} (or give a .toml path)")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SuiteError(f"{path} is not valid TOML: {err}") from err
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("methods") and isinstance(raw.get("method_options"), dict):
        raw["method_options"] = {m: o for m, o in raw["method_options"].items() if m in overrides["methods"]}
    if "plugins" in raw:
        import_plugins(_check_list("plugins", raw["plugins"], str))
    if known_models is None or known_methods is None:
        known_models, known_methods = registered_names()
    return parse_suite(raw, known_models, known_methods)


def suite_to_dict(suite: Suite) -> dict[str, Any]:
    """Plain dict of a suite (for hparams and the report)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(suite).items()}
