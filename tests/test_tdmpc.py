"""TD-MPC: model structure, planning, learning, checkpoints and resumable training (tiny preset)."""
import csv
import warnings

import pytest
import torch
import torch_pruning as tp

from agents.tdmpc import (COMPONENTS, TDMPC, TOLD, ReplayBuffer, load_agent, output_layers, preset,
                          save_agent, trace_forward)
import agents.tdmpc.model as model_module
from agents.tdmpc.checkpoint import save_resume
from agents.tdmpc.report import RunSummary, replace_table, summarize, table, targets
from agents.tdmpc.train import TrainArgs, evaluate, train
from envs import make_env

CFG = preset("tiny")


def filled_buffer(obs_dim=5, act_dim=1, episodes=4, length=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    buf = ReplayBuffer(obs_dim, act_dim, episodes * length, CFG.horizon)
    for _ in range(episodes):
        buf.add(torch.randn(length + 1, obs_dim, generator=g), torch.rand(length, act_dim, generator=g) * 2 - 1,
                torch.rand(length, generator=g))
    return buf


def test_told_structure_is_flat_and_unshared():
    model = TOLD(preset("cpu"), obs_dim=24, act_dim=6)
    assert [n for n, _ in model.named_children()] == list(COMPONENTS)
    modules = [m for name in COMPONENTS for m in getattr(model, name)]
    assert len({id(m) for m in modules}) == len(modules), "an activation instance is shared"
    assert all(not list(m.children()) for m in modules)
    assert output_layers(model) == ["reward.4", "pi.4", "q1.5", "q2.5"]
    assert model.widths()["q1"] == [256, 256, 1] and model.encoder[-1].out_features == 50
    for head in (model.reward, model.q1, model.q2):
        assert head[-1].weight.abs().sum() == 0
    assert "params=" in repr(model) and "latent=50" in repr(model)


def test_trace_forward_runs_two_latent_steps():
    model = TOLD(CFG, 5, 2)
    out = trace_forward(model, {"obs": torch.randn(3, 5), "action": torch.rand(3, 2)})
    assert len(out) == 10 and out[-1].shape == (3, CFG.latent_dim) and out[0].shape == (3, 2)


def test_latent_is_one_pruning_group_when_traced_with_trace_forward():
    model = TOLD(CFG, 5, 2)
    inputs = {"obs": torch.randn(3, 5), "action": torch.rand(3, 2)}
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=inputs, forward_fn=trace_forward)
    group = dg.get_pruning_group(model.encoder[-1], tp.prune_linear_out_channels, idxs=[0, 1])
    touched = {dep.target.module for dep, _ in group}
    assert {model.dynamics[-1], model.dynamics[0], model.reward[0], model.pi[0], model.q1[0], model.q2[0]} <= touched


def test_agent_plans_and_evaluates_after_physical_pruning():
    agent = TDMPC(CFG, 5, 1)
    inputs = {"obs": torch.randn(3, 5), "action": torch.rand(3, 1)}
    ignored = [agent.model.get_submodule(name) for name in output_layers(agent.model)]
    pruner = tp.pruner.BasePruner(agent.model, inputs, importance=tp.importance.GroupMagnitudeImportance(),
                                  pruning_ratio=0.25, ignored_layers=ignored, forward_fn=trace_forward)
    pruner.step()
    assert agent.model.encoder[-1].out_features == 12 and agent.model.q1[-1].out_features == 1
    mean, std, returns = evaluate(agent, make_env("cartpole-swingup", seed=0), episodes=1, seed=0, step=1000)
    assert len(returns) == 1 and 0 <= mean <= 1000
    agent.reset_training_state()
    assert agent.target.encoder[-1].out_features == 12
    agent.update(filled_buffer(), 0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_plan_returns_bounded_actions_of_the_right_shape(precision):
    torch.manual_seed(0)
    agent = TDMPC(preset("tiny", precision=precision), 5, 3)
    obs = torch.randn(5) * 10
    for eval_mode in (False, True):
        for t0 in (True, False):
            a = agent.plan(obs, eval_mode=eval_mode, step=10_000, t0=t0)
            assert a.shape == (3,) and a.abs().max() <= 1
    assert agent.act(obs.numpy()).dtype.name == "float32"
    seed_action = agent.plan(obs, step=0)
    assert seed_action.shape == (3,) and seed_action.abs().max() <= 1


def test_updates_lower_the_model_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    agent, buf = TDMPC(CFG, 5, 1), filled_buffer()
    batch = buf.sample(64)
    before = agent.losses(batch)["weighted"].item()
    for step in range(40):
        metrics = agent.update(buf, step)
    assert agent.losses(batch)["weighted"].item() < 0.8 * before
    assert set(metrics) >= {"consistency_loss", "reward_loss", "value_loss", "pi_loss", "grad_norm"}


def test_bf16_updates_keep_fp32_weights_and_bad_precision_is_refused():
    agent = TDMPC(preset("tiny", precision="bf16"), 5, 1)
    metrics = agent.update(filled_buffer(), 0)
    assert all(p.dtype == torch.float32 for p in agent.model.parameters())
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    with pytest.raises(ValueError, match="fp32"):
        preset("tiny", precision="fp16")


@pytest.mark.parametrize("precision,native,warns", [("bf16", False, True), ("bf16", True, False),
                                                     ("fp32", False, False)])
def test_loading_a_bf16_agent_warns_only_where_bf16_is_emulated(tmp_path, monkeypatch, precision, native, warns):
    save_agent(tmp_path / "agent.pt", TDMPC(preset("tiny", precision=precision), 5, 1), "cartpole-swingup")
    monkeypatch.setattr(model_module, "native_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_agent(tmp_path / "agent.pt", task="cartpole-swingup")
    emulated = [w for w in caught if "no native bf16" in str(w.message)]
    assert len(emulated) == warns and (not warns or "agent.pt" in str(emulated[0].message))


def test_bf16_without_native_kernels_matches_native_bf16_up_to_rounding(monkeypatch):
    torch.manual_seed(0)
    model, obs, action = TOLD(preset("tiny"), 5, 2), torch.randn(256, 5), torch.rand(256, 2) * 2 - 1

    def next_latent(native: bool) -> torch.Tensor:
        monkeypatch.setattr(model_module, "native_bf16", lambda: native)
        with model_module.compute_precision("bf16"):
            mode = torch.overrides._get_current_function_mode()
            assert isinstance(mode, model_module.Bf16LinearInFp32) != native
            return model.next(model.h(obs), action)[0]

    native, emulated = next_latent(True), next_latent(False)
    assert emulated.dtype == native.dtype == torch.bfloat16
    assert (emulated == native).float().mean() > 0.99
    torch.testing.assert_close(emulated, native, rtol=2 ** -7, atol=2 ** -7)  # at most one bf16 step apart
    assert not torch.equal(emulated.float(), model.next(model.h(obs), action)[0])  # not fp32
    emulated.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.encoder.parameters())


def test_buffer_slices_stay_inside_episodes():
    buf = filled_buffer(episodes=3, length=10)
    b = buf.sample(500)
    assert b.next_obs.shape == (CFG.horizon, 500, 5) and b.reward.shape == (CFG.horizon, 500, 1)
    assert ((b.idxs % 10) <= 10 - CFG.horizon).all() and b.weights.max() == 1


def test_checkpoint_round_trip_gives_identical_actions(tmp_path):
    agent = TDMPC(CFG, 5, 1)
    agent.update(filled_buffer(), 0)
    agent.step = 123
    save_agent(tmp_path / "agent.pt", agent, "cartpole-swingup")
    loaded = load_agent(tmp_path / "agent.pt", task="cartpole-swingup", cfg=CFG)
    assert loaded.step == 123
    obs = torch.randn(5)
    actions = []
    for a in (agent, loaded):
        torch.manual_seed(7)
        actions.append(a.plan(obs, eval_mode=True, step=1000))
    torch.testing.assert_close(actions[0], actions[1], rtol=0, atol=0)


def test_corrupt_and_mismatched_checkpoints_are_refused(tmp_path):
    agent, path = TDMPC(CFG, 5, 1), tmp_path / "agent.pt"
    save_agent(path, agent, "cartpole-swingup")
    with pytest.raises(ValueError, match="task"):
        load_agent(path, task="walker-walk")
    with pytest.raises(ValueError, match="mlp_dim"):
        load_agent(path, cfg=preset("tiny", mlp_dim=32))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_agent(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_agent(garbage)
    save_resume(tmp_path / "resume.pt", agent, "cartpole-swingup", {})
    with pytest.raises(ValueError, match="not a ctrlprune/tdmpc-agent"):
        load_agent(tmp_path / "resume.pt")


def eval_rows(out):
    with open(out / "eval.csv") as f:
        return list(csv.DictReader(f))


def test_tiny_training_resumes_where_it_stopped(tmp_path):
    args = TrainArgs(task="cartpole-swingup", seed=2, steps=1000, preset="tiny", out_dir=str(tmp_path),
                     eval_freq=500, eval_episodes=1, save_freq=500, threads=1, progress=False)
    out = train(args)
    assert [(r["seed"], r["step"]) for r in eval_rows(out)] == [("2", "1000")]
    assert load_agent(out / "agent.pt", task="cartpole-swingup").step == 125
    args.steps = 2000
    train(args)
    rows = eval_rows(out)
    assert [r["step"] for r in rows] == ["1000", "2000"]
    assert all(0 <= float(r["return"]) <= 1000 for r in rows)
    log = (out / "train.log").read_text()
    assert "resume at 1000" in log and log.count("done:") == 2
    assert load_agent(out / "agent.pt").step == 250
    summary = summarize(out)
    assert summary.env_steps == 2000 and summary.finished and summary.command == args.command()
    assert float(summary.final_return.split()[0]) == pytest.approx(float(rows[-1]["return"]), abs=0.06)
    rendered = table([summary])
    assert "| cartpole-swingup | 2 | 2,000 | finished |" in rendered and "858.8 ± 6.1 (floor 852.7) missed" in rendered
    readme = tmp_path / "README.md"
    readme.write_text("# Runs\n\n| task | seed |\n|---|---|\n| old | row |\n\nText after.\n")
    replace_table(readme, rendered)
    assert readme.read_text() == f"# Runs\n\n{rendered}\n\nText after.\n"
    with pytest.raises(ValueError, match="config differs"):
        train(TrainArgs(**{**args.__dict__, "preset": "cpu"}))


def test_targets_table_judges_each_target():
    def run(task: str, mean: float, minutes: float) -> RunSummary:
        return RunSummary(task, 1, 100_000, 100_000, f"{mean} ± 1", minutes * 60, "fp32", 20.0, 50.0, "cmd", mean)

    speed = {"rows": [{"config": "cpu/fp32", "plan_ms": 7.5}, {"config": "upstream/fp32", "plan_ms": 300.0}]}
    rendered = targets([run("cartpole-swingup", 860.0, 4.0), run("cartpole-swingup", 846.0, 9.0),
                        run("cup-catch", 950.0, 70.0)], speed)
    assert "| cartpole-swingup: mean return at 100k >= 852.7 (published mean - std) | 853.0 over 2 run(s) | met |" in rendered
    assert "| cup-catch: mean return at 100k >= 972.3 (published mean - std) | 950.0 over 1 run(s) | **missed** |" in rendered
    assert "| cartpole-swingup: 100k env steps in <= 5 min | fastest run 4.0 min | met |" in rendered
    assert "| 7.5 ms | met |" in rendered and "upstream" not in rendered
