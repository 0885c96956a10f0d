"""Channel blocks (PruningProblem.round_to): whole blocks removed by every method, masks that fade whole
blocks, and a masked model equal to the pruned one across a channel-mixing op (SimNorm)."""
from __future__ import annotations

import itertools

import pytest
import torch

from pruning import (ParamModel, SoftMasks, build_groups, get_method, harden_widths, kept_widths, n_removed,
                     prepare, ranking)
from pruning.ranking import block_order
from unseen_models import SIMNORM_DIM, predictions, world_inputs, world_problem

LATENT = "dynamics.3"


def test_round_to_gives_each_group_its_block_size():
    by_name = {g.label: g.block for g in build_groups(world_problem(round_to={"latent": 8, "reward": 4}))}
    assert by_name[LATENT] == 8 and by_name["reward.0"] == 4 and by_name["encoder.0"] == 1
    assert {g.block for g in build_groups(world_problem(round_to=8))} == {8}
    called = build_groups(world_problem(round_to=lambda group: 8 if group.kind == "inter" else 2))
    assert {g.label: g.block for g in called}[LATENT] == 8 and called[0].block == 2


def test_bad_block_sizes_are_clear_errors():
    with pytest.raises(ValueError, match=r"round_to names \['latnet'\].*group labels"):
        build_groups(world_problem(round_to={"latnet": 8}))
    with pytest.raises(ValueError, match="group 'dynamics.3' has 48 channels, not a multiple of its block size 5"):
        build_groups(world_problem(round_to={LATENT: 5}))
    with pytest.raises(ValueError, match="integers >= 1"):
        world_problem(round_to={LATENT: 0})


def test_widths_move_in_whole_blocks():
    assert [n_removed(c, 48, 8) for c in (0.0, 0.1, 0.2, 0.5, 0.99)] == [0, 8, 8, 24, 40]
    assert [n_removed(c, 48) for c in (0.1, 0.5)] == [5, 24]
    groups = build_groups(world_problem(round_to={"latent": 8}))
    assert all(w % g.block == 0 for g in groups for w in [kept_widths({g.label: 0.37}, groups)[g.label]])


def test_block_order_keeps_blocks_whole_and_ranks_them_by_summed_importance():
    scores = torch.tensor([5.0, 0.0, 1.0, 1.0, 9.0, 9.0])
    assert block_order(scores, 2).tolist() == [2, 3, 0, 1, 4, 5]
    assert block_order(scores).tolist() == [1, 2, 3, 0, 4, 5]
    order = ranking(world_problem(round_to={"latent": 8}), build_groups(world_problem(round_to={"latent": 8})),
                    "random", seed=3)[LATENT].view(-1, 8)
    assert ((order - order[:, :1]) == torch.arange(8)).all() and (order[:, 0] % 8 == 0).all()


def _kept_latent_channels(dense: torch.nn.Module, pruned: torch.nn.Module) -> list[int]:
    """Which dense latent channels the pruned dynamics output kept (its biases are distinct floats)."""
    bias = dense.get_submodule(LATENT).bias.tolist()
    return sorted(bias.index(b) for b in pruned.get_submodule(LATENT).bias.tolist())


@pytest.mark.parametrize("method", ["tp-magnitude", "tp-random", "gradient", "grid"])
def test_every_physical_method_removes_whole_simnorm_groups(method):
    problem = world_problem(round_to={"latent": 8})
    options = {"steps": 20} if method == "gradient" else {"budget": 20} if method == "grid" else {}
    result = get_method(method)(problem, 0.5, eps=0.02, **options)
    kept = _kept_latent_channels(problem.model, result.model)
    assert len(kept) < 48 and len(kept) % SIMNORM_DIM == 0
    assert {c // SIMNORM_DIM for c in kept} == {c // SIMNORM_DIM for c in kept[::SIMNORM_DIM]}
    assert all(kept[i:i + 8] == list(range(kept[i], kept[i] + 8)) for i in range(0, len(kept), 8))


@pytest.mark.parametrize("method", ["torch-l2", "torch-random"])
def test_mask_baselines_mask_whole_blocks(method):
    result = get_method(method)(world_problem(round_to={"latent": 8}), 0.5, eps=0.05)
    for producer in ("encoder.3", LATENT):
        alive = result.model.get_submodule(producer).weight_mask.any(dim=1).view(-1, 8)
        assert (alive.all(dim=1) | ~alive.any(dim=1)).all()


def test_the_masked_model_computes_what_the_pruned_model_computes():
    problem = world_problem(round_to={"latent": 8})
    ctx = prepare(problem, 0.5, 0.02)
    order = ranking(problem, ctx.groups, "magnitude")
    widths = {g.label: g.width - n_removed(0.4, g.width, g.block) for g in ctx.groups}
    pruned, _ = harden_widths(problem, ctx.groups, order, widths)
    masked = SoftMasks(problem.model, ctx.groups, order, temperature=0.05)
    x = world_inputs(321)
    with torch.no_grad(), masked, masked.pinned(widths):
        soft_sparsity = float(ctx.params.sparsity(masked.expected_widths()))
        for want, got in zip(predictions(pruned, x), predictions(problem.model, x)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert soft_sparsity == pytest.approx(ctx.hard_sparsity(widths), abs=1e-12)
    assert widths[LATENT] == 32


def test_soft_masks_fade_whole_blocks():
    problem = world_problem(round_to={"latent": 8})
    groups = build_groups(problem)
    latent = next(g for g in groups if g.label == LATENT)
    masks = SoftMasks(problem.model, groups, ranking(problem, groups, "magnitude"), init=0.5, temperature=0.1)
    values = masks.mask(latent).view(-1, 8)
    assert torch.equal(values, values[:, :1].expand(-1, 8)) and len(values.unique()) == 6


def _reachable(problem, target: float, eps: float) -> tuple[bool, bool]:
    """(some width vector lies in [target - eps, target), some lies in [target, target + eps])."""
    ctx = prepare(problem, target, eps)
    levels = [[g.width - k * g.block for k in range(g.width // g.block)] for g in ctx.groups]
    rho = 1 - ctx.params.params_batch(torch.tensor(list(itertools.product(*levels)))) / ctx.params.dense
    return bool(((rho >= target - eps) & (rho < target)).any()), bool(((rho >= target) & (rho <= target + eps)).any())


def test_gradient_falls_back_to_the_whole_band_when_the_one_sided_window_is_empty():
    problem = world_problem(round_to=16)
    target = next(t for t in torch.arange(0.2, 0.3, 0.002).tolist() if _reachable(problem, t, 0.01) == (True, False))
    result = get_method("gradient")(problem, target, eps=0.01, steps=20)
    assert result.in_band and result.achieved < target and result.info["band_fallback"]
