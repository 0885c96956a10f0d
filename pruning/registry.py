"""One registry for every pruning method: `method(problem, target, *, eps, seed, **options) -> PruneResult`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from pruning.problem import PruningProblem
from pruning.result import PruneResult


class PruningMethod(Protocol):
    """The signature every registered method has."""

    def __call__(self, problem: PruningProblem, target: float, *, eps: float = 0.01, seed: int = 0,
                 **options) -> PruneResult: ...


MASK = "mask"
"""Family of methods that zero weights with `torch.nn.utils.prune` masks: nothing is removed."""
STRUCTURAL = "structural"
"""Family of methods that remove channels of their own choosing with torch-pruning."""
WIDTH = "width"
"""Family of methods that search a kept width per group and cut the dense model to those widths along the
shared within-group ranking (`ctrlprune ablate` can rebuild their solutions from the widths)."""
OTHER = "other"
"""Family of methods that declare none of the above."""


@dataclass(frozen=True)
class MethodInfo:
    """What reports and tools need to know about a registered method besides calling it."""

    name: str
    family: str
    """MASK, STRUCTURAL, WIDTH or OTHER."""
    config: type | None
    """Dataclass of the method's options (their defaults), None when it declares none."""
    order: int
    """Display order in tables and legends: the order of registration."""


_METHODS: dict[str, PruningMethod] = {}
_DECLARED: dict[str, tuple[str | None, type | None]] = {}


def register_method(name: str, *, family: str | None = None,
                    config: type | None = None) -> Callable[[PruningMethod], PruningMethod]:
    """Decorator registering a pruning method under `name`, with its family and options dataclass."""
    def register(fn: PruningMethod) -> PruningMethod:
        if name in _METHODS:
            raise ValueError(f"pruning method {name!r} is already registered")
        _METHODS[name] = fn
        _DECLARED[name] = (family, config)
        return fn
    return register


def _shipped() -> dict[str, tuple[str, type | None]]:
    """Family and options dataclass of the methods this package ships."""
    from pruning.gradient import GradientConfig
    from pruning.grid import GridConfig

    return {"torch-random": (MASK, None), "torch-l2": (MASK, None), "tp-random": (STRUCTURAL, None),
            "tp-magnitude": (STRUCTURAL, None), "grid": (WIDTH, GridConfig), "grid-group": (WIDTH, GridConfig),
            "gradient": (WIDTH, GradientConfig)}


def method_info(name: str) -> MethodInfo:
    """Family, options dataclass and display order of the method registered as `name`."""
    get_method(name)
    family, config = _DECLARED[name]
    shipped_family, shipped_config = _shipped().get(name, (OTHER, None))
    return MethodInfo(name, family or shipped_family, config or shipped_config, list(_METHODS).index(name))


def methods_of(family: str) -> list[str]:
    """Registered methods of `family`, in display order."""
    return [name for name in _METHODS if method_info(name).family == family]


def display_order() -> list[str]:
    """Every registered method in display order."""
    return list(_METHODS)


def get_method(name: str) -> PruningMethod:
    """The method registered as `name`; ValueError listing the valid names otherwise."""
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"unknown pruning method {name!r}; valid methods: {list_methods()}") from None


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    return sorted(_METHODS)


def check_options(method: str, options: dict, valid: list[str]) -> None:
    """Raise ValueError naming the valid options if `options` holds an unknown key."""
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"method {method!r} got unknown options {unknown}; valid options: {sorted(valid)}")
