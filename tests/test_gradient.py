"""Gradient search on soft coefficients: it lowers the task surrogate and lands in the band."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from pruning import GradientConfig, SoftMasks, build_groups, get_method, harden_widths, kept_widths, prepare, ranking
from pruning.gradient import fix_up, greedy_widths, start_coefficients, uniform_start, widened
from test_groups import TinyAE, ae_problem


def low_rank_images(n: int, seed: int) -> torch.Tensor:
    """64-pixel 'images' driven by 6 hidden factors, so a trained 8-wide bottleneck has real structure."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(6, 64, generator=torch.Generator().manual_seed(0))
    return torch.sigmoid(torch.randn(n, 6, generator=generator) @ mixing)


@pytest.fixture(scope="module")
def trained_problem():
    torch.manual_seed(0)
    model, data = TinyAE(), low_rank_images(1024, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(300):
        x = data[(step * 128) % 1024:][:128]
        loss = nn.functional.mse_loss(model(x), x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    batches, heldout = data.split(256), low_rank_images(256, seed=2)

    def surrogate(masked: nn.Module, step: int) -> torch.Tensor:
        x = heldout if step < 0 else batches[step % len(batches)]
        return nn.functional.mse_loss(masked(x), x)

    return ae_problem(model, surrogate=surrogate)


def heldout_loss(problem, model: nn.Module) -> float:
    with torch.no_grad():
        return float(problem.surrogate(model, -1))


def test_gradient_lowers_the_surrogate_and_lands_in_band(trained_problem):
    problem = trained_problem
    ctx = prepare(problem, 0.5, 0.01)
    order = ranking(problem, ctx.groups)
    start = kept_widths({g.label: uniform_start(ctx) for g in ctx.groups}, ctx.groups)
    uniform, _ = harden_widths(problem, ctx.groups, order, start)
    result = get_method("gradient")(problem, 0.5, steps=150)
    assert result.in_band and result.evaluations == 0 and result.history
    assert heldout_loss(problem, result.model) < heldout_loss(problem, uniform)
    assert result.widths != start  # width moved between groups
    assert result.info["heldout_best"] == pytest.approx(heldout_loss(problem, result.model), rel=1e-4)


def test_same_seed_same_coefficients(trained_problem):
    a, b = (get_method("gradient")(trained_problem, 0.6, steps=40, seed=7) for _ in range(2))
    assert a.coefficients == b.coefficients


def test_fix_up_moves_single_channels_into_the_band(trained_problem):
    ctx = prepare(trained_problem, 0.45, 0.01)
    masks = SoftMasks(trained_problem.model, ctx.groups, ranking(trained_problem, ctx.groups), init=0.3,
                      temperature=0.05)
    for widths in ({g.label: g.width for g in ctx.groups}, {g.label: 2 for g in ctx.groups}):
        assert not ctx.in_band(ctx.hard_sparsity(widths))
        fixed = fix_up(ctx, masks, widths)
        assert ctx.in_band(ctx.hard_sparsity(fixed))


def test_widened_variants_double_a_narrow_group_and_pay_from_the_wider_ones(trained_problem):
    ctx = prepare(trained_problem, 0.7, 0.01)
    ctx.floor = 0.7
    masks = SoftMasks(trained_problem.model, ctx.groups, ranking(trained_problem, ctx.groups), init=0.3,
                      temperature=0.05)
    full = {g.label: g.width for g in ctx.prunable}
    with masks:
        solution = fix_up(ctx, masks, greedy_widths(ctx, masks, chunks=8))
        variants = widened(ctx, masks, solution, 2, chunks=8)
    narrow = sorted((l for l in full if 2 * solution[l] <= full[l]), key=lambda l: solution[l] / full[l])
    assert ctx.acceptable(ctx.hard_sparsity(solution)) and narrow and variants
    for label, variant in variants.items():
        assert ctx.acceptable(ctx.hard_sparsity(variant)) and variant != solution
        grown = [l for l in narrow[:2] if variant[l] >= min(full[l], 2 * solution[l])]
        assert grown == [label]
        share = variant[grown[0]] / full[grown[0]]
        shrunk = [l for l in full if variant[l] < solution[l]]
        assert shrunk and all(solution[l] / full[l] > share and variant[l] / full[l] >= share for l in shrunk)


def test_gradient_input_errors(trained_problem):
    with pytest.raises(ValueError, match="needs problem.surrogate"):
        get_method("gradient")(ae_problem(), 0.5)
    with pytest.raises(ValueError, match=r"unknown options \['budget'\].*'lr'"):
        get_method("gradient")(trained_problem, 0.5, budget=3)
    with pytest.raises(ValueError, match="select must be"):
        GradientConfig(select="best")
    for option in ("final_candidates", "final_widen"):
        with pytest.raises(ValueError, match="final_widen of method 'gradient' need problem.metric"):
            get_method("gradient")(trained_problem, 0.5, **{option: 2})
        with pytest.raises(ValueError, match=option):
            GradientConfig(**{option: -1})
    assert len(build_groups(trained_problem)) == 5


def test_gradient_never_undercuts_the_target_by_default():
    problem = ae_problem(surrogate=lambda m, step: torch.nn.functional.mse_loss(m(problem.example_inputs), problem.example_inputs))
    for target in (0.3, 0.5):
        result = get_method("gradient")(problem, target, eps=0.02, steps=30)
        assert result.in_band and target - 1e-9 <= result.achieved <= target + 0.02


def test_keep_inter_start_runs_with_the_latent_whole_and_competes(trained_problem):
    ctx = prepare(trained_problem, 0.5, 0.01)
    coeffs = start_coefficients(ctx, "keep-inter")
    inter = [g.label for g in ctx.groups if g.kind == "inter"]
    assert inter and all(coeffs[label] == 0.0 for label in inter)
    assert ctx.in_band(ctx.hard_sparsity(kept_widths(coeffs, ctx.groups)))
    single = get_method("gradient")(trained_problem, 0.5, steps=40)
    both = get_method("gradient")(trained_problem, 0.5, steps=40, starts=["uniform", "keep-inter"])
    assert set(both.info["starts_run"]) == {"uniform", "keep-inter"} and both.in_band
    assert both.info["heldout_best"] <= single.info["heldout_best"] + 1e-9
    with pytest.raises(ValueError, match="starts must be"):
        GradientConfig(starts=["middle"])


def test_keep_inter_start_is_skipped_without_prunable_inter_groups():
    problem = ae_problem(surrogate=lambda m, step: torch.nn.functional.mse_loss(m(problem.example_inputs), problem.example_inputs))
    problem.latent_prunable = False
    assert start_coefficients(prepare(problem, 0.4, 0.02), "keep-inter") is None
    result = get_method("gradient")(problem, 0.4, eps=0.02, steps=10, starts=["uniform", "keep-inter"])
    assert list(result.info["starts_run"]) == ["uniform"]


def test_greedy_start_removes_dead_channels_first_and_competes(trained_problem):
    model = copy.deepcopy(trained_problem.model)
    with torch.no_grad():  # a third of decoder.2's channels are dead (no input, no output), on top of ReLU's
        model.decoder[2].weight[:16].zero_()
        model.decoder[2].bias[:16].zero_()
        model.decoder[4].weight[:, :16].zero_()
    x = low_rank_images(256, seed=3)
    with torch.no_grad():
        dense_out = model(x)
    problem = ae_problem(model, surrogate=lambda m, step: nn.functional.mse_loss(m(x), dense_out))
    ctx = prepare(problem, 0.1, 0.01)
    masks = SoftMasks(copy.deepcopy(model), ctx.groups, ranking(problem, ctx.groups, "magnitude"))
    with masks:
        widths = greedy_widths(ctx, masks, chunks=8)
        uniform = kept_widths({g.label: uniform_start(ctx) for g in ctx.groups}, ctx.groups)
        loss = {}
        for name, kept in (("greedy", widths), ("uniform", uniform)):
            with masks.pinned(kept), torch.no_grad():
                loss[name] = float(problem.surrogate(masks.model, 0))
    assert ctx.hard_sparsity(widths) >= ctx.aim
    assert loss["greedy"] < 1e-10 < loss["uniform"]  # greedy removed only channels that do nothing
    result = get_method("gradient")(problem, 0.1, steps=20, importance="magnitude", starts=["uniform", "greedy"])
    assert set(result.info["starts_run"]) == {"uniform", "greedy"} and result.in_band
    assert result.info["heldout_best"] == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="pass masks"):
        start_coefficients(ctx, "greedy")


def test_probe_runs_every_start_briefly_and_only_the_leader_to_the_end(trained_problem):
    result = get_method("gradient")(trained_problem, 0.5, steps=40, probe_steps=10, starts=["uniform", "keep-inter"])
    steps = {name: run["steps"] for name, run in result.info["starts_run"].items()}
    leader = min(result.info["start_heldout"], key=lambda pair: pair[1])[0]
    assert steps == {name: (40 if name == leader else 10) for name in ("uniform", "keep-inter")}
    assert result.in_band and result.info["best_start"] in steps
    full = get_method("gradient")(trained_problem, 0.5, steps=40, starts=["uniform", "keep-inter"])
    assert set(full.info["starts_run"]) == {"uniform", "keep-inter"}
    assert all(run["steps"] == 40 for run in full.info["starts_run"].values())
    with pytest.raises(ValueError, match="probe_steps"):
        GradientConfig(probe_steps=-1)


def test_lazy_greedy_finds_the_full_greedy_widths_with_fewer_surrogate_calls(trained_problem):
    calls = {"n": 0}

    def counted(masked: nn.Module, step: int) -> torch.Tensor:
        calls["n"] += 1
        return trained_problem.surrogate(masked, step)

    problem = copy.copy(trained_problem)
    problem.surrogate = counted
    ctx = prepare(problem, 0.4, 0.01)
    found = {}
    with SoftMasks(copy.deepcopy(problem.model), ctx.groups, ranking(problem, ctx.groups, "magnitude")) as masks:
        for lazy in (False, True):
            calls["n"] = 0
            found[lazy] = (greedy_widths(ctx, masks, chunks=8, lazy=lazy), calls["n"])
    (full, full_calls), (lazy, lazy_calls) = found[False], found[True]
    assert ctx.hard_sparsity(lazy) >= ctx.aim
    assert lazy == full and lazy_calls < full_calls
