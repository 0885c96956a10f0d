"""What the sweep needs from a use case (a trained model plus its task), and the registry of use cases."""
from __future__ import annotations

import inspect
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from pruning import PruneResult, PruningProblem, count_macs, measure_latency_ms
from pruning.registry import check_option_types

if TYPE_CHECKING:
    from benchmarks.sweep.store import ResultsFolder


@dataclass(frozen=True)
class PruningTargets:
    """What a use case expects of its suites' results, judged by `ctrlprune targets` (benchmarks.report.targets)."""

    method: str
    """The method the targets are about."""
    rival: str
    """The baseline `method` must clearly beat at the `headline` level."""
    slower: str
    """The search whose time `method`'s must undercut by `time_ratio`."""
    levels: tuple[float, ...]
    """The target sparsities of a complete suite."""
    keep: float = 0.95
    """Fraction of the dense metric `method` keeps at every level up to `up_to`."""
    up_to: float = 0.5
    headline: float = 0.2
    """The level at which `method` must clearly beat `rival`."""
    time_ratio: float = 0.2
    collapsed: float = 0.1
    """Below this fraction of the dense metric a baseline has collapsed: `method` under it is not a miss."""
    floor_level: float | None = None
    """A level past `up_to` at which `method` must still keep `floor_keep` of the dense metric (None: no target)."""
    floor_keep: float = 0.5


@dataclass
class FineTuned:
    """A model after fine-tuning, with the metric taken at the requested points along the way."""

    model: nn.Module
    curve: list[tuple[int, float]]
    """(steps done, metric mean) at each requested point, ascending"""


class UseCase(ABC):
    """A trained model and the task that scores it: loads the model, poses the pruning problem, evaluates."""

    name: str = ""
    metric_name: str = ""
    latent_layer: str = ""
    """qualified name of the layer whose output is the latent (for latent stability)"""
    method_defaults: dict[str, dict[str, Any]] = {}
    """Per-method option defaults this task needs (a suite's method_options override them)."""
    code_versions: dict[str, str] = {}
    """Per-method version of this use case's own code that the method's cells depend on (e.g. the surrogate
    for 'gradient'). It enters those cells' fingerprints: bump it when that code changes, so finished
    cells made with the old code are recomputed instead of resumed."""
    extras_level: float | None = None
    """Target sparsity whose first-seed cells keep `extras` (beside the dense cell's), for `figures`."""
    targets: PruningTargets | None = None
    """The targets `ctrlprune targets` judges this use case's suites against; None: none declared."""
    finetune_version: str = "1"
    """Version of this use case's fine-tuning code, in the fingerprint of fine-tuned cells only: bump it when
    that code changes."""

    def __init__(self, checkpoint: str = "", **options: Any) -> None:
        self.checkpoint = checkpoint
        self.options = options
        self.device = torch.device("cpu")
        """Where this use case evaluates models (`set_device`)."""

    def set_device(self, device: torch.device) -> None:
        """Evaluate on `device` where this use case can; `self.device` then says where it does (use cases that
        run only on the CPU keep it)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, metric={self.metric_name}, checkpoint={self.checkpoint or 'default'})"

    @abstractmethod
    def load(self) -> nn.Module:
        """The dense trained model (eval mode)."""

    @abstractmethod
    def problem(self, model: nn.Module, seed: int, latent_prunable: bool) -> PruningProblem:
        """The pruning problem: components, output layers, tracing, validation metric and surrogate."""

    @abstractmethod
    def evaluate(self, model: nn.Module, seed: int) -> tuple[float, float]:
        """Task metric on held-out data (mean, spread); higher is better."""

    @abstractmethod
    def latents(self, model: nn.Module, seed: int) -> torch.Tensor:
        """Latents of `model` on the same held-out inputs each call (N, d)."""

    @abstractmethod
    def latency_inputs(self) -> dict[str, Any]:
        """Example inputs for latency, keyed by column suffix: {'b1': ..., 'b256': ...}."""

    def latency(self, model: nn.Module) -> dict[str, float]:
        """CPU latency columns `latency_ms_<key>`: median forward time on each latency input."""
        return {f"latency_ms_{k}": measure_latency_ms(model, x) for k, x in self.latency_inputs().items()}

    def macs(self, model: nn.Module) -> int:
        """Multiply-accumulates of one batch-1 forward."""
        return count_macs(model, self.latency_inputs()["b1"])

    def recorded_settings(self) -> dict[str, Any]:
        """Settings each row records beside its metrics that are not part of a cell's identity unless a suite
        names them (e.g. how TD-MPC episodes are run); none by default."""
        return {}

    def extras(self, model: nn.Module, seed: int) -> dict[str, Any]:
        """Side data kept with a cell for figures (e.g. reconstructions); empty by default."""
        return {}

    @classmethod
    def figures(cls, folder: ResultsFolder, out: Path) -> list[Path]:
        """Figures of this use case's own (e.g. from the `extras` of stored cells) written under `out`, beside
        the figures every suite gets; none by default."""
        return []

    def diagnostics(self, model: nn.Module, seed: int) -> dict[str, float]:
        """Cheap scores of a pruned model that `ctrlprune ablate` shows next to its metric; empty by default."""
        return {}

    def method_options(self, method: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Options a method runs with on this task: the task's defaults, then `overrides` (a suite's)."""
        return {**self.method_defaults.get(method, {}), **(overrides or {})}

    def finetune(self, model: nn.Module, result: PruneResult | None, steps: int, eval_at: list[int],
                 seed: int) -> FineTuned:
        """Train `model` (the pruning `result`'s, or a copy of the dense model when `result` is None) for
        `steps` steps on the task's training data, taking the metric after each of `eval_at` (all below
        `steps`). Masked layers keep their masks; physically pruned layers train at their widths. Use cases
        that cannot fine-tune leave this undefined (a suite asking them to is refused when it loads)."""
        raise NotImplementedError(f"{self.name} cannot fine-tune")

    def extra_metrics(self, dense: nn.Module, model: nn.Module, seed: int, kept: torch.Tensor | None) -> dict[str, float]:
        """Further columns (e.g. rollout_error); `kept` = surviving latent indices when the latent shrank."""
        return {}


_REGISTRY: dict[str, Callable[..., UseCase]] = {}
_PREFIXES: dict[str, Callable[..., UseCase]] = {}


def register_usecase(name: str, prefix: bool = False) -> Callable:
    """Class decorator: make a use case available by `name` (or every `name-<task>` when prefix=True)."""

    def wrap(factory: Callable[..., UseCase]) -> Callable[..., UseCase]:
        (_PREFIXES if prefix else _REGISTRY)[name] = factory
        return factory

    return wrap


def list_usecases() -> list[str]:
    """Registered use-case names; prefixed families are shown as `<prefix>-<task>`."""
    return sorted(_REGISTRY) + [f"{p}-<task>" for p in sorted(_PREFIXES)]


def is_known_usecase(name: str) -> bool:
    return name in _REGISTRY or any(name.startswith(f"{p}-") for p in _PREFIXES)


def require_positive(owner: str, **counts: int) -> None:
    """ValueError naming the first of `counts` (option name -> value) that is below 1."""
    for key, value in counts.items():
        if value < 1:
            raise ValueError(f"{owner} option {key!r} must be >= 1, got {value}")


def _factory(name: str) -> tuple[Callable[..., UseCase], dict[str, Any]]:
    """The factory of use case `name` and the arguments it gets besides the options (the task of a family)."""
    if name in _REGISTRY:
        return _REGISTRY[name], {}
    for prefix, factory in _PREFIXES.items():
        if name.startswith(f"{prefix}-"):
            return factory, {"task": name[len(prefix) + 1:]}
    raise ValueError(f"unknown model {name!r}; valid models: {list_usecases()}")


def usecase_type(name: str) -> type[UseCase]:
    """The class registered for use case `name`, without building it (no model or data is loaded); the base
    class for names registered with a factory function or not registered in this process."""
    factory = _REGISTRY.get(name) or next((f for p, f in _PREFIXES.items() if name.startswith(f"{p}-")), None)
    return factory if isinstance(factory, type) and issubclass(factory, UseCase) else UseCase


def get_usecase(name: str, checkpoint: str = "", **options: Any) -> UseCase:
    """Build the use case `name`, with a clear error listing the valid ones."""
    factory, fixed = _factory(name)
    check_usecase_options(name, options)
    return factory(**fixed, checkpoint=checkpoint, **options)


def check_usecase_options(name: str, options: dict[str, Any]) -> None:
    """ValueError (one line) for an option the use case's factory does not take, or one of the wrong type
    (types from the factory's annotations), before anything is built."""
    factory, _ = _factory(name)
    accepted = inspect.signature(factory).parameters
    valid = sorted(set(accepted) - {"self", "task", "checkpoint"})
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = sorted(k for k in options if k in ("self", "task", "checkpoint") or not (open_ended or k in valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} of model {name!r}; its options: {valid}")
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):  # annotations that cannot be resolved here: checked when the use case runs
        return
    check_option_types(f"model {name!r}", options, hints)
