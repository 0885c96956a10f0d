"""Pruning a TD-MPC agent: every method leaves an agent that plans and trains, with a matching target."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from agents.tdmpc import TDMPC, preset
from agents.tdmpc.checkpoint import save_agent
from benchmarks.usecases import get_usecase
from pruning import get_method
from test_tdmpc import filled_buffer

FAST = {"grid": {"budget": 2}, "gradient": {"steps": 6, "eval_every": 3}}
"""Small budgets: behaviour, not quality, is under test."""


def layer_shapes(model: torch.nn.Module) -> dict[str, tuple]:
    """Weight and bias shapes of every layer (masked layers included: their effective weight)."""
    return {name: (tuple(m.weight.shape), tuple(m.bias.shape)) for name, m in model.named_modules()
            if getattr(m, "weight", None) is not None and getattr(m, "bias", None) is not None}


def surrogate_values(path, models: list[torch.nn.Module], **options) -> list[float]:
    """The TD-MPC surrogate (batch 0) of each model, against the tiny cartpole agent saved at `path` (1 calibration
    episode, 8 states, 4 candidates per state, `options` as model options)."""
    usecase = get_usecase("tdmpc-cartpole-swingup", str(path), calib_episodes=1, states=8, candidates=4, **options)
    surrogate = usecase.problem(usecase.load(), 0, latent_prunable=True).surrogate
    with torch.no_grad():
        return [float(surrogate(model, 0)) for model in models]


@pytest.fixture(scope="module")
def tiny_usecase(tiny_agent_path):
    return get_usecase("tdmpc-cartpole-swingup", str(tiny_agent_path), episodes=1, grid_episodes=1,
                       calib_episodes=1, states=8, candidates=4)


@pytest.mark.parametrize("method", ["torch-random", "torch-l2", "tp-random", "tp-magnitude", "grid", "gradient"])
def test_every_method_leaves_an_agent_that_plans_and_trains(tiny_usecase, method):
    dense = tiny_usecase.load()
    for level in (0.1, 0.5, 0.9):
        problem = tiny_usecase.problem(dense, 0, latent_prunable=True)
        options = tiny_usecase.method_options(method, FAST.get(method))
        result = get_method(method)(problem, level, eps=0.02, seed=0, **options)
        assert result.in_band, (method, level, result.achieved)
        agent = tiny_usecase.pruned_agent(result)
        assert layer_shapes(agent.target) == layer_shapes(agent.model)
        action = agent.plan(tiny_usecase.visits().obs[0], eval_mode=True, step=agent.step)
        assert action.shape == (1,) and bool(action.abs().le(1).all())
        losses = agent.update(filled_buffer(), agent.step)
        assert all(torch.isfinite(torch.as_tensor(v)).all() for v in losses.values())


def test_surrogate_sees_one_q_head_move_against_its_twin(tmp_path):
    torch.manual_seed(0)
    agent = TDMPC(preset("tiny"), obs_dim=5, act_dim=1)
    agent.step = 10_000
    agent.model.q2.load_state_dict(agent.model.q1.state_dict())  # twins: min(Q1, Q2) = Q2 when Q1 moves up
    save_agent(tmp_path / "agent.pt", agent, "cartpole-swingup")
    moved = copy.deepcopy(agent.model)
    with torch.no_grad():
        moved.q1[-1].bias.add_(5.0)  # the planner's values keep still, the twin gap does not
    for twin_weight, gap_seen in ((1.0, True), (0.0, False)):
        at_dense, at_moved = surrogate_values(tmp_path / "agent.pt", [agent.model, moved], twin_weight=twin_weight)
        assert at_dense == pytest.approx(0.0, abs=1e-9)
        assert (at_moved > 1.0) == gap_seen


def agent_with_reward_spread(path) -> TDMPC:
    """A tiny cartpole agent saved at `path` whose reward head predicts varied rewards (heads start at zero)."""
    torch.manual_seed(0)
    agent = TDMPC(preset("tiny"), obs_dim=5, act_dim=1)
    agent.step = 10_000
    with torch.no_grad():
        agent.model.reward[-1].weight.normal_()
    save_agent(path, agent, "cartpole-swingup")
    return agent


def test_surrogate_scores_the_reward_part_in_its_own_units(tmp_path):
    agent = agent_with_reward_spread(tmp_path / "agent.pt")
    flipped = copy.deepcopy(agent.model)
    with torch.no_grad():
        flipped.reward[-1].weight.neg_()  # every predicted reward negated: centered reward sums flip sign
        flipped.reward[-1].bias.neg_()
    (without,), (with_term,) = (surrogate_values(tmp_path / "agent.pt", [flipped], reward_weight=w) for w in (0.0, 1.0))
    assert with_term - without == pytest.approx(4.0, rel=1e-4)  # (-c - c)^2 / c^2


def test_planner_regret_is_zero_for_the_same_choices_only(tmp_path):
    agent = agent_with_reward_spread(tmp_path / "agent.pt")
    with torch.no_grad():
        for head in (agent.model.q1, agent.model.q2):  # a critic that tells actions apart
            head[-1].weight.normal_()
    save_agent(tmp_path / "agent.pt", agent, "cartpole-swingup")
    shifted, flipped = copy.deepcopy(agent.model), copy.deepcopy(agent.model)
    with torch.no_grad():
        shifted.reward[-1].bias.add_(3.0)  # every sequence gains the same value: the planner chooses the same
        flipped.reward[-1].weight.neg_()  # the planner chooses other sequences
    usecase = get_usecase("tdmpc-cartpole-swingup", str(tmp_path / "agent.pt"), calib_episodes=1)
    regret = [usecase.diagnostics(model, seed=0)["planner_regret"] for model in (agent.model, shifted, flipped)]
    assert regret[0] == 0.0 and regret[1] == pytest.approx(0.0, abs=1e-5)
    assert abs(regret[2]) > 1e-3


def test_final_selection_keeps_the_leader_the_episodes_rate_best(tiny_usecase):
    problem = tiny_usecase.problem(tiny_usecase.load(), 0, latent_prunable=True)
    options = tiny_usecase.method_options("gradient", {**FAST["gradient"], "final_candidates": 3})
    result = get_method("gradient")(problem, 0.5, seed=0, **options)
    scored = result.info["final_selection"]
    assert 2 <= len(scored) <= 3 and result.evaluations == len(scored) and result.in_band
    surrogates = [surrogate for surrogate, *_ in scored]
    assert surrogates == sorted(surrogates) and surrogates[0] == result.info["heldout_best"]
    assert len({tuple(sorted(widths.items())) for _, _, widths, _ in scored}) == len(scored)
    assert result.widths == max(scored, key=lambda row: row[1])[2]
    plain = get_method("gradient")(problem, 0.5, seed=0, **tiny_usecase.method_options("gradient", FAST["gradient"]))
    assert plain.info["final_selection"] == [] and plain.evaluations == 0
    assert plain.widths == scored[0][2]  # off, the surrogate's best is kept


def test_final_selection_also_scores_widened_variants(tiny_usecase):
    problem = tiny_usecase.problem(tiny_usecase.load(), 0, latent_prunable=True)
    options = tiny_usecase.method_options("gradient", {**FAST["gradient"], "final_candidates": 1, "final_widen": 2})
    result = get_method("gradient")(problem, 0.7, seed=0, **options)
    scored = result.info["final_selection"]
    assert len(scored) >= 2 and result.evaluations == len(scored) and result.in_band
    assert scored[0][0] == result.info["heldout_best"] and scored[0][3] == "search"
    assert all(origin.startswith("widened ") for *_, origin in scored[1:])
    assert len({tuple(sorted(widths.items())) for _, _, widths, _ in scored}) == len(scored)
    assert result.widths == max(scored, key=lambda row: row[1])[2]


def test_pruned_target_keeps_the_dense_targets_own_weights(tiny_usecase):
    dense_agent = tiny_usecase.agent()
    with torch.no_grad():
        for p in dense_agent.target.parameters():
            p.add_(1.0)  # make the target differ from the model, as EMA does
    try:
        problem = tiny_usecase.problem(tiny_usecase.load(), 0, latent_prunable=True)
        result = get_method("tp-magnitude")(problem, 0.4, eps=0.02)
        agent = tiny_usecase.pruned_agent(result)
        difference = agent.target.q1[0].weight - agent.model.q1[0].weight
        assert torch.allclose(difference, torch.ones_like(difference))
    finally:
        with torch.no_grad():
            for p in dense_agent.target.parameters():
                p.sub_(1.0)


def test_prune_and_evaluate_a_tdmpc_agent_through_the_cli(tiny_usecase, tmp_path):
    out = tmp_path / "pruned.pt"
    cli = [sys.executable, "-m", "benchmarks.cli"]
    pruned = subprocess.run([*cli, "prune", "--model", "tdmpc-cartpole-swingup", "--checkpoint", tiny_usecase.checkpoint,
                             "--method", "tp-magnitude", "--sparsity", "0.3", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert pruned.returncode == 0, pruned.stderr
    scored = subprocess.run([*cli, "eval", str(out)], capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stderr
    assert "return:" in scored.stdout and "tp-magnitude" in scored.stdout


def test_choice_term_sees_a_changed_ranking_but_not_a_shift(tmp_path):
    agent = agent_with_reward_spread(tmp_path / "agent.pt")
    shifted, flipped = copy.deepcopy(agent.model), copy.deepcopy(agent.model)
    with torch.no_grad():
        shifted.reward[-1].bias.add_(3.0)  # every sequence of a state gains the same value: same planner weights
        flipped.reward[-1].weight.neg_()  # the planner would prefer other sequences
    scores = {w: surrogate_values(tmp_path / "agent.pt", [shifted, flipped], choice_weight=w) for w in (0.0, 1.0)}
    assert scores[0.0][0] == pytest.approx(0.0, abs=1e-6) and scores[1.0][0] == pytest.approx(0.0, abs=1e-6)
    assert scores[1.0][1] > scores[0.0][1] + 1e-4


def constant_policy(model: torch.nn.Module, action: float) -> torch.nn.Module:
    """A copy of `model` whose policy always outputs `action` (tanh of a large bias)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.pi[-1].weight.zero_()
        model.pi[-1].bias.fill_(torch.atanh(torch.tensor(action * 0.999)))
    return model


def test_proposal_term_sees_a_worse_policy_only(tmp_path):
    agent = agent_with_reward_spread(tmp_path / "agent.pt")
    agent.model = constant_policy(agent.model, 1.0)  # in this agent's own estimate, +1 beats -1 from most states
    save_agent(tmp_path / "agent.pt", agent, "cartpole-swingup")
    reward_moved = copy.deepcopy(agent.model)
    with torch.no_grad():
        reward_moved.reward[-1].bias.add_(3.0)  # the policy's rollouts are unchanged
    models = [agent.model, reward_moved, constant_policy(agent.model, -1.0)]
    terms = {w: surrogate_values(tmp_path / "agent.pt", models, proposal_weight=w) for w in (0.0, 1.0)}
    added = [with_term - without for with_term, without in zip(terms[1.0], terms[0.0])]
    assert added[0] == pytest.approx(0.0, abs=1e-9) and added[1] == pytest.approx(0.0, abs=1e-9)
    assert added[2] > 1e-3


@pytest.mark.parametrize("method", ["grid", "gradient"])
def test_mean_replacement_reaches_the_pruned_target_too(tiny_usecase, method):
    dense_agent = tiny_usecase.agent()
    saved = copy.deepcopy(dense_agent.target.state_dict())
    dense_agent.target.load_state_dict(dense_agent.model.state_dict())
    try:
        problem = tiny_usecase.problem(tiny_usecase.load(), 0, latent_prunable=True)
        options = tiny_usecase.method_options(method, {**FAST[method], "mean_replacement": True})
        result = get_method(method)(problem, 0.5, eps=0.02, seed=0, **options)
        assert result.in_band and result.replaced
        agent = tiny_usecase.pruned_agent(result)
    finally:
        dense_agent.target.load_state_dict(saved)
    for (name, a), b in zip(agent.model.named_parameters(), agent.target.parameters()):
        torch.testing.assert_close(a, b, msg=name)  # a target equal to the model stays equal after pruning
    assert agent.plan(tiny_usecase.visits().obs[0], eval_mode=True, step=agent.step).shape == (1,)
