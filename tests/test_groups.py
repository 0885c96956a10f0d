"""Pruning groups on real torch-pruning graphs: a small MLP autoencoder and a TD-MPC-like TOLD model.

The model builders here are shared by the other pruning tests
(`from test_groups import ...`).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from pruning import PruningProblem, build_groups, dependency_graph, format_group_table
from pruning.groups import tp_group

TOLD_COMPONENTS = ("encoder", "dynamics", "reward", "pi", "q1", "q2")


class TinyAE(nn.Module):
    """64-48-32-8-32-48-64 ReLU autoencoder with components encoder / decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 8))
        self.decoder = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 48), nn.ReLU(), nn.Linear(48, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _mlp(n_in: int, hidden: int, n_out: int, layer_norm: bool = False) -> nn.Sequential:
    first = [nn.Linear(n_in, hidden), nn.LayerNorm(hidden), nn.Tanh()] if layer_norm else [nn.Linear(n_in, hidden), nn.ELU()]
    return nn.Sequential(*first, nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, n_out))


class TinyTOLD(nn.Module):
    """TD-MPC's TOLD in miniature: dynamics, reward and Qs read cat([z, a]); Qs have LayerNorm + Tanh."""

    def __init__(self, obs: int = 6, act: int = 2, latent: int = 12, hidden: int = 24) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(obs, hidden), nn.ELU(), nn.Linear(hidden, latent))
        self.dynamics = _mlp(latent + act, hidden, latent)
        self.reward = _mlp(latent + act, hidden, 1)
        self.pi = _mlp(latent, hidden, act)
        self.q1 = _mlp(latent + act, hidden, 1, layer_norm=True)
        self.q2 = _mlp(latent + act, hidden, 1, layer_norm=True)


def told_rollout(model: nn.Module, obs: torch.Tensor) -> list[torch.Tensor]:
    """Encode, then two latent steps each calling pi, both Qs, reward and dynamics (the traced forward)."""
    z, outputs = model.encoder(obs), []
    for _ in range(2):
        a = torch.tanh(model.pi(z))
        za = torch.cat([z, a], -1)
        outputs += [a, model.q1(za), model.q2(za), model.reward(za)]
        z = model.dynamics(za)
    return outputs + [z]


def ae_problem(model: nn.Module | None = None, **kwargs) -> PruningProblem:
    torch.manual_seed(0)
    model = model or TinyAE()
    return PruningProblem(model, {"encoder": "encoder", "decoder": "decoder"}, ["decoder.4"],
                          torch.randn(4, 64), **kwargs)


def told_problem(model: nn.Module | None = None, **kwargs) -> PruningProblem:
    torch.manual_seed(0)
    model = model or TinyTOLD()
    return PruningProblem(model, {c: c for c in TOLD_COMPONENTS}, ["reward.4", "pi.4", "q1.5", "q2.5"],
                          torch.randn(4, 6), forward_fn=told_rollout, **kwargs)


def test_ae_groups_follow_the_architecture():
    groups = build_groups(ae_problem())
    assert [(g.label, g.width, g.kind) for g in groups] == [
        ("encoder.0", 48, "intra"), ("encoder.2", 32, "intra"), ("encoder.4", 8, "inter"),
        ("decoder.0", 32, "intra"), ("decoder.2", 48, "intra")]
    latent = groups[2]
    assert latent.components == ("encoder", "decoder")
    assert {(m.module, m.kind) for m in latent.members} == {("encoder.4", "out"), ("decoder.0", "in")}
    assert all(g.prunable for g in groups)


def test_told_latent_is_one_inter_group_touching_all_six_components():
    groups = build_groups(told_problem())
    inter = [g for g in groups if g.kind == "inter"]
    assert len(inter) == 1 and len(groups) == 12
    latent = inter[0]
    assert latent.width == 12 and latent.components == TOLD_COMPONENTS
    assert {(m.module, m.kind) for m in latent.members} == {
        ("encoder.2", "out"), ("dynamics.4", "out"), ("dynamics.0", "in"), ("reward.0", "in"),
        ("pi.0", "in"), ("q1.0", "in"), ("q2.0", "in")}
    # only the z slice of cat([z, a]) belongs to the latent group
    assert dict((m.module, m.idxs) for m in latent.members)["dynamics.0"] == tuple(range(12))
    q_hidden = next(g for g in groups if g.label == "q1.0")
    assert ("q1.1", "norm") in {(m.module, m.kind) for m in q_hidden.members}
    assert all(len(g.components) == 1 for g in groups if g.kind == "intra")


def test_latent_not_prunable_marks_only_the_inter_group():
    groups = build_groups(told_problem(latent_prunable=False))
    assert [g.label for g in groups if not g.prunable] == [g.label for g in groups if g.kind == "inter"]


def test_building_groups_leaves_the_dense_model_untouched_and_groups_refindable_on_a_copy():
    problem = told_problem()
    problem.model.train()
    before = copy.deepcopy(problem.model.state_dict())
    groups = build_groups(problem)
    assert problem.model.training
    assert all(torch.equal(before[k], v) for k, v in problem.model.state_dict().items())
    clone = copy.deepcopy(problem.model)
    dg = dependency_graph(clone, problem)
    for group in groups:
        found = tp_group(dg, group)
        assert len(found[0].idxs) == group.width
        assert found[0].dep.target.module is clone.get_submodule(group.label)


def test_group_table_lists_every_group():
    groups = build_groups(told_problem())
    table = format_group_table(groups)
    assert table.count("\n") == len(groups) + 1
    assert all(f"| {g.label} |" in table for g in groups)
    assert "encoder, dynamics, reward, pi, q1, q2" in table


def test_unknown_component_or_output_layer_is_a_clear_error():
    with pytest.raises(ValueError, match=r"not a submodule.*child modules are \['decoder', 'encoder'\]"):
        PruningProblem(TinyAE(), {"encoder": "enc"}, ["decoder.4"], torch.randn(4, 64))
    with pytest.raises(ValueError, match="output layer 'decoder.9'"):
        PruningProblem(TinyAE(), {"encoder": "encoder"}, ["decoder.9"], torch.randn(4, 64))
