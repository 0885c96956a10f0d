"""One registry for every pruning method: `method(problem, target, *, eps, seed, **options) -> PruneResult`."""
from __future__ import annotations

from typing import Callable, Protocol

from pruning.problem import PruningProblem
from pruning.result import PruneResult


class PruningMethod(Protocol):
    """The signature every registered method has."""

    def __call__(self, problem: PruningProblem, target: float, *, eps: float = 0.01, seed: int = 0,
                 **options) -> PruneResult: ...


_METHODS: dict[str, PruningMethod] = {}


def register_method(name: str) -> Callable[[PruningMethod], PruningMethod]:
    """Decorator registering a pruning method under `name`."""
    def register(fn: PruningMethod) -> PruningMethod:
        if name in _METHODS:
            raise ValueError(f"pruning method {name!r} is already registered")
        _METHODS[name] = fn
        return fn
    return register


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
