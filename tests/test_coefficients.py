"""Coefficients: rounding to kept widths, physical removal, history replay and soft masks."""
from __future__ import annotations

import copy

import pytest
import torch

from pruning import SoftMasks, build_groups, consumer_means, harden, kept_widths, ranking
from pruning.coefficients import harden_with_means
from pruning.groups import dependency_graph
from test_groups import ae_problem, told_problem, told_rollout


def test_kept_widths_round_and_keep_at_least_one_channel():
    groups = build_groups(ae_problem(latent_prunable=False))
    widths = kept_widths({"encoder.0": 0.25, "encoder.2": 0.99, "encoder.4": 0.5}, groups)
    assert widths == {"encoder.0": 36, "encoder.2": 1, "encoder.4": 8, "decoder.0": 32, "decoder.2": 48}


def test_harden_removes_the_least_important_channels_and_never_touches_the_dense_model():
    problem = ae_problem()
    groups = build_groups(problem)
    order = ranking(problem, groups)
    dense = copy.deepcopy(problem.model.state_dict())
    pruned, history = harden(problem, groups, order, {"encoder.0": 0.5})
    kept = torch.sort(order["encoder.0"][24:]).values
    assert torch.equal(pruned.encoder[0].weight, problem.model.encoder[0].weight[kept])
    assert torch.equal(pruned.encoder[2].weight, problem.model.encoder[2].weight[:, kept])
    assert history[0][0] == "encoder.0" and sorted(history[0][2]) == sorted(order["encoder.0"][:24].tolist())
    assert all(torch.equal(dense[k], v) for k, v in problem.model.state_dict().items())


def test_history_replays_on_a_target_network():
    problem = told_problem()
    groups = build_groups(problem)
    pruned, history = harden(problem, groups, ranking(problem, groups), {g.label: 0.4 for g in groups})
    target = copy.deepcopy(problem.model)
    dependency_graph(target, problem).load_pruning_history(history)
    obs = torch.randn(5, 6)
    for a, b in zip(told_rollout(pruned, obs), told_rollout(target, obs)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("with_means", [False, True])
@pytest.mark.parametrize("problem_fn,forward", [
    (ae_problem, lambda m, x: [m(x)]),
    (told_problem, told_rollout),
])
def test_hard_masks_compute_exactly_what_the_pruned_model_computes(problem_fn, forward, with_means):
    """Also with mean replacement: masks mixing in the means == the pruned model with means folded in."""
    problem = problem_fn()
    groups = build_groups(problem)
    order = ranking(problem, groups)
    means = consumer_means(problem, groups) if with_means else None
    coeffs = {g.label: 0.2 + 0.05 * i for i, g in enumerate(groups)}
    pruned, _, replaced = harden_with_means(problem, groups, order, kept_widths(coeffs, groups), means)
    assert bool(replaced) == with_means
    assert all(len(idxs) == len(values) > 0 for idxs, values in replaced.values())
    x = problem.example_inputs
    with SoftMasks(problem.model, groups, order, init=coeffs, temperature=0, means=means), torch.no_grad():
        masked = forward(problem.model, x)
    with torch.no_grad():
        physical = forward(pruned, x)
    for a, b in zip(masked[:-1] if problem_fn is told_problem else masked, physical):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_mask_fades_monotonically_as_its_coefficient_grows():
    problem = ae_problem()
    groups = build_groups(problem)
    masks = SoftMasks(problem.model, groups, ranking(problem, groups), temperature=0.05)
    group = groups[0]
    trace = []
    for c in torch.linspace(0, 0.95, 20):
        masks.set_widths({})
        with torch.no_grad():
            masks.c[group.label].fill_(float(c))
        trace.append(masks.mask(group).detach())
    trace = torch.stack(trace)
    assert torch.all(trace[1:] <= trace[:-1] + 1e-7)
    assert float(trace[-1].sum()) < 0.2 * float(trace[0].sum())
    least_important = ranking(problem, groups)[group.label][0]
    assert float(trace[10, least_important]) < float(trace[10].max())


def test_removing_masks_restores_the_model_exactly():
    problem = told_problem()
    groups = build_groups(problem)
    obs = torch.randn(3, 6)
    with torch.no_grad():
        before = told_rollout(problem.model, obs)
    masks = SoftMasks(problem.model, groups, ranking(problem, groups), init=0.5, temperature=0.1)
    with masks, torch.no_grad():
        during = told_rollout(problem.model, obs)
    with torch.no_grad():
        after = told_rollout(problem.model, obs)
    assert not torch.equal(before[1], during[1])
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in problem.model.modules())


def test_ranking_is_deterministic_and_seeded():
    problem = ae_problem()
    groups = build_groups(problem)
    magnitude = ranking(problem, groups)
    assert all(torch.equal(magnitude[k], v) for k, v in ranking(problem, groups).items())
    r1, r2, r3 = (ranking(problem, groups, "random", seed) for seed in (3, 3, 4))
    assert all(torch.equal(r1[k], r2[k]) for k in r1)
    assert any(not torch.equal(r1[k], r3[k]) for k in r1)
    assert all(sorted(v.tolist()) == list(range(g.width)) for g, v in zip(groups, r1.values()))
    with pytest.raises(ValueError, match=r"valid choices: \['taylor', 'magnitude', 'random'\]"):
        ranking(problem, groups, "hessian")


def test_taylor_ranking_puts_dead_channels_first_and_leaves_the_model_alone():
    x = torch.rand(32, 64)
    problem = ae_problem(surrogate=lambda m, step: torch.nn.functional.mse_loss(m(x), x))
    first = problem.model.encoder[0]
    with torch.no_grad():
        first.weight[[5, 9]] = 0.0  # two channels of encoder.0 never fire after ReLU when their bias is <= 0
        first.bias[[5, 9]] = -1.0
    groups = build_groups(problem)
    order = ranking(problem, groups, "taylor")
    assert set(order["encoder.0"][:2].tolist()) == {5, 9}
    assert all(p.grad is None for p in problem.model.parameters())
    without_surrogate = ae_problem(model=problem.model)
    magnitude = ranking(without_surrogate, groups, "magnitude")
    assert all(torch.equal(magnitude[k], v) for k, v in ranking(without_surrogate, groups, "taylor").items())


def test_taylor_of_a_self_distillation_falls_back_to_magnitude_with_a_warning():
    problem = ae_problem()
    x = problem.example_inputs
    with torch.no_grad():
        teacher = problem.model(x).clone()
    problem.surrogate = lambda m, step: torch.nn.functional.mse_loss(m(x), teacher)  # zero gradient at the teacher
    groups = build_groups(problem)
    with pytest.warns(UserWarning, match="zero gradient at the dense model"):
        order = ranking(problem, groups, "taylor")
    magnitude = ranking(problem, groups, "magnitude")
    assert all(torch.equal(magnitude[k], v) for k, v in order.items())


def test_straight_through_masks_are_hard_forward_and_soft_backward():
    problem = ae_problem()
    groups = build_groups(problem)
    order = ranking(problem, groups)
    masks = SoftMasks(problem.model, groups, order, init=0.3, temperature=0.05, straight_through=True)
    group = groups[0]
    mask = masks.mask(group)
    with masks.pinned(kept_widths({group.label: 0.3}, groups)):
        hard = masks.mask(group)
    torch.testing.assert_close(mask.detach(), hard, rtol=0, atol=1e-6)
    assert int(hard.sum()) == group.width - round(0.3 * group.width)
    mask.sum().backward()
    assert float(masks.c[group.label].grad) < 0
    assert float(masks.c[group.label].detach()) == pytest.approx(0.3)  # pinned() gave the coefficient back


def test_mean_replacement_is_the_least_squares_constant_for_the_next_layer():
    x = torch.rand(256, 64)
    problem = ae_problem(surrogate=lambda model, step: (model(x) - x).pow(2).mean())
    groups = build_groups(problem)
    order = ranking(problem, groups, "magnitude")
    widths = {g.label: (24 if g.label == "encoder.0" else g.width) for g in groups}  # half of the first hidden layer
    means = consumer_means(problem, groups)
    dense, errors = problem.model.encoder[:3](x).detach(), {}
    for name, given in (("zero", None), ("mean", means)):
        pruned, _, _ = harden_with_means(problem, groups, order, widths, given)
        errors[name] = float((pruned.encoder[:3](x).detach() - dense).pow(2).mean())
    assert errors["mean"] < errors["zero"]
