"""One registry for every pruning method: `method(problem, target, *, eps, seed, **options) -> PruneResult`."""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Protocol

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
class NoOptions:
    """Options dataclass of a method that takes none."""


@dataclass(frozen=True)
class MethodInfo:
    """What reports and tools need to know about a registered method besides calling it."""

    name: str
    family: str
    """MASK, STRUCTURAL, WIDTH or OTHER."""
    config: type | None
    """Dataclass of the method's options (their defaults; `NoOptions` for none), None when it declares none
    (its options are then checked only when it runs)."""
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

    return {"torch-random": (MASK, NoOptions), "torch-l2": (MASK, NoOptions), "tp-random": (STRUCTURAL, NoOptions),
            "tp-magnitude": (STRUCTURAL, NoOptions), "grid": (WIDTH, GridConfig), "grid-group": (WIDTH, GridConfig),
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


def check_method_options(method: str, options: dict[str, Any]) -> None:
    """ValueError (one line) unless `options` are names, types and values the method's options dataclass
    accepts; methods registered without one are checked when they run."""
    config = method_info(method).config
    if config is None:
        return
    hints = typing.get_type_hints(config)
    check_options(method, options, [f.name for f in dataclasses.fields(config)])
    check_option_types(f"method {method!r}", options, hints)
    try:
        config(**options)
    except (TypeError, ValueError) as err:
        raise ValueError(f"method {method!r}: {err}") from None


def check_option_types(owner: str, options: dict[str, Any], hints: dict[str, Any]) -> None:
    """ValueError naming the first option whose value does not have its declared type (ints count as floats)."""
    for key, value in options.items():
        if key in hints and not fits_type(value, hints[key]):
            raise ValueError(f"{owner} option {key!r} must be {type_name(hints[key])}, got "
                             f"{type(value).__name__} {value!r}")


def fits_type(value: Any, hint: Any) -> bool:
    """Whether a plain value (as read from TOML) has the type `hint`: scalars, None, unions, lists/tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits_type(value, arg) for arg in args)
    if hint is None or hint is type(None):
        return value is None
    if origin in (list, tuple) or hint in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(fits_type(v, items[0]) for v in value if items)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def type_name(hint: Any) -> str:
    """A declared type as a reader would write it: 'int or None', 'list of str'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if hint is type(None):
        return "None"
    if origin in (list, tuple):
        items = [a for a in args if a is not Ellipsis]
        return f"a list of {type_name(items[0])}" if items else "a list"
    return getattr(hint, "__name__", str(hint))
