"""Component-aware structured pruning of neural-network controllers (model-agnostic).

    >>> from pruning import PruningProblem, build_groups, format_group_table, get_method
    >>> problem = PruningProblem(model, {"encoder": "encoder", "decoder": "decoder"}, ["decoder.4"],
    ...                          example_inputs=x[:4], metric=psnr_on_valid, surrogate=mse_on_calib)
    >>> print(format_group_table(build_groups(problem)))
    >>> result = get_method("gradient")(problem, 0.5, eps=0.01, seed=0)   # or "tp-magnitude", "grid", ...
    >>> result.model, result.achieved, result.in_band, result.widths
"""
from pruning.coefficients import (SoftMasks, coefficients_for, consumer_means, fold_replacement, harden, harden_widths,
                                  kept_widths, mean_replacement, n_removed)
from pruning.context import (SearchContext, UnusableModelError, check_usable, finish, max_sparsity, prepare,
                             solve_ratio)
from pruning.groups import Group, Member, build_groups, dependency_graph, format_group_table
from pruning.problem import PruningProblem, validate_problem, validate_target
from pruning.ranking import IMPORTANCES, ranking
from pruning.replay import replay_history
from pruning.registry import get_method, list_methods, register_method
from pruning.result import PruneResult
from pruning.sparsity import ParamModel, count_params, sparsity
from pruning.stats import count_macs, measure_latency_ms
from pruning import baselines, grid, gradient  # noqa: F401  (registers the methods)
from pruning.baselines import refresh_masked_weights, weight_masks
from pruning.gradient import GradientConfig
from pruning.grid import DEFAULT_BUDGET, GridConfig, GridEstimate, estimate_grid

__all__ = [
    "PruningProblem", "validate_problem", "validate_target",
    "Group", "Member", "build_groups", "dependency_graph", "format_group_table",
    "ranking", "IMPORTANCES",
    "ParamModel", "count_params", "sparsity",
    "kept_widths", "n_removed", "coefficients_for", "harden", "harden_widths", "SoftMasks",
    "consumer_means", "mean_replacement", "fold_replacement", "replay_history",
    "SearchContext", "prepare", "max_sparsity", "solve_ratio", "finish", "check_usable", "UnusableModelError",
    "PruneResult", "register_method", "get_method", "list_methods",
    "GradientConfig", "GridConfig", "GridEstimate", "estimate_grid", "DEFAULT_BUDGET",
    "count_macs", "measure_latency_ms", "weight_masks", "refresh_masked_weights",
]
