"""Batched planning, lock-step evaluation and devices of TD-MPC (tiny agents; CUDA parts skip without a GPU)."""
import numpy as np
import pytest
import torch

from agents.tdmpc import TDMPC, TOLD, load_agent, preset, save_agent
from agents.tdmpc.evaluate import LockstepEvaluator, evaluate_agent
from agents.tdmpc.planner import EpisodeNoise, MPPIPlanner
from envs import make_env

CFG = preset("tiny")
LATE = 10_000
"""An agent step past every schedule: the full horizon."""
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def tiny_agent(obs_dim: int = 5, act_dim: int = 2, seed: int = 0, **kwargs) -> TDMPC:
    torch.manual_seed(seed)
    agent = TDMPC(CFG, obs_dim, act_dim, **kwargs)
    with torch.no_grad():  # non-zero heads, so that values and choices depend on the actions
        for head in (agent.model.reward, agent.model.q1, agent.model.q2):
            head[-1].weight.normal_(0, 0.5)
    return agent


@pytest.mark.parametrize("eval_mode", [True, False])
def test_a_batched_plan_equals_single_plans_with_the_same_noise(eval_mode):
    agent, rows = tiny_agent(), 4
    obs = torch.randn(3, rows, 5)
    batched_noise, single_noise = EpisodeNoise.seeded(range(rows)), EpisodeNoise.seeded(range(rows))
    singles = [MPPIPlanner(CFG, 2) for _ in range(rows)]
    for t in range(3):  # warm starts carry over per episode
        batch = agent.planner.plan(agent.model, obs[t], LATE, eval_mode, t == 0, batched_noise)
        one = torch.stack([planner.plan(agent.model, obs[t, e], LATE, eval_mode, t == 0, single_noise.select([e]))
                           for e, planner in enumerate(singles)])
        assert batch.shape == (rows, 2) and batch.abs().max() <= 1
        torch.testing.assert_close(batch, one, rtol=1e-5, atol=1e-5)


def test_warm_start_is_per_episode_and_dropped_at_first_steps():
    agent, obs = tiny_agent(), torch.randn(2, 5)
    agent.planner.plan(agent.model, obs, LATE, True, True, EpisodeNoise.seeded([0, 1]))
    mixed = agent.planner.plan(agent.model, obs, LATE, True, torch.tensor([True, False]), EpisodeNoise.seeded([2, 3]))
    fresh = MPPIPlanner(CFG, 2).plan(agent.model, obs[0], LATE, True, True, EpisodeNoise.seeded([2]))
    torch.testing.assert_close(mixed[0], fresh)
    cold = MPPIPlanner(CFG, 2).plan(agent.model, obs[1], LATE, True, True, EpisodeNoise.seeded([3]))
    assert not torch.allclose(mixed[1], cold)  # episode 1 started from its previous mean


def test_imagine_adds_policy_noise_to_the_terminal_value_only_when_asked():
    model, z = TOLD(CFG, 5, 2), torch.randn(6, CFG.latent_dim)
    actions, noise = torch.rand(3, 6, 2) * 2 - 1, torch.randn(6, 2)
    clean, again = model.imagine(z, actions, 0.9), model.imagine(z, actions, 0.9)
    noisy = model.imagine(z, actions, 0.9, terminal_std=0.3, terminal_noise=noise)
    torch.testing.assert_close(clean.value(), again.value())
    torch.testing.assert_close(noisy.rewards, clean.rewards)
    q1, q2 = model.Q(noisy.latent, model.pi_action(noisy.latent, 0.3, noise))
    torch.testing.assert_close(noisy.heads, 0.9 ** 3 * torch.cat([q1, q2], dim=1))
    assert clean.value().shape == (6, 1)


def test_graphs_mode_is_refused_off_cuda_and_bad_modes_are_refused():
    agent = tiny_agent()
    with pytest.raises(ValueError, match="CUDA"):
        MPPIPlanner(CFG, 2, "graphs").plan(agent.model, torch.randn(5), LATE, True, True)
    with pytest.raises(ValueError, match="plan mode"):
        MPPIPlanner(CFG, 2, "fast")


def test_lockstep_episodes_give_the_returns_of_sequential_episodes():
    env = make_env("cartpole-swingup", seed=0)
    agent = tiny_agent(env.observation_space.shape[0], env.action_space.shape[0])
    factory = lambda: make_env("cartpole-swingup", seed=0)
    lockstep = LockstepEvaluator(factory).run(agent, 3, 7, LATE, record=True)
    sequential = LockstepEvaluator(factory, lockstep=False).run(agent, 3, 7, LATE, record=True)
    assert lockstep.steps * 3 == sequential.steps and len(lockstep.returns) == 3
    assert len(set(lockstep.returns)) == 3  # different episodes
    assert lockstep.returns == pytest.approx(sequential.returns, rel=1e-4, abs=1e-3)
    assert lockstep.plan_seconds > 0 and lockstep.env_seconds > 0
    for ours, theirs in zip(lockstep.observations + lockstep.actions, sequential.observations + sequential.actions):
        assert ours.shape == theirs.shape and ours.shape[0] == lockstep.steps
        assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-4)
    legacy = evaluate_agent(agent, factory, 1, 7, "legacy", LATE)
    assert len(legacy.returns) == 1
    with pytest.raises(ValueError, match="evaluator"):
        evaluate_agent(agent, factory, 1, 7, "fast")


def test_async_stepping_gives_the_returns_and_trajectories_of_inline_stepping():
    env = make_env("cartpole-swingup", seed=0)
    agent = tiny_agent(env.observation_space.shape[0], env.action_space.shape[0])
    factory = lambda: make_env("cartpole-swingup", seed=0)
    inline = LockstepEvaluator(factory, stepping="inline").run(agent, 3, 7, LATE, record=True)
    stepper = LockstepEvaluator(factory, stepping="async")
    try:
        parallel = stepper.run(agent, 3, 7, LATE, record=True)
        again = stepper.run(agent, 3, 7, LATE)  # the processes are reused
    finally:
        stepper.close()
    assert parallel.returns == inline.returns == again.returns and parallel.steps == inline.steps
    for ours, theirs in zip(parallel.observations + parallel.actions, inline.observations + inline.actions):
        assert np.array_equal(ours, theirs)
    assert stepper.steps_async(agent, 3)
    assert not LockstepEvaluator(factory).steps_async(agent, 3)  # auto: inline on the CPU
    with pytest.raises(ValueError, match="stepping must be one of"):
        LockstepEvaluator(factory, stepping="threads")


@pytest.mark.filterwarnings("ignore:for .* copying from a non-meta parameter")
def test_a_checkpoint_loads_on_another_device(tmp_path):
    agent = tiny_agent()
    save_agent(tmp_path / "agent.pt", agent, "cartpole-swingup")
    loaded = load_agent(tmp_path / "agent.pt", device="meta")
    assert {p.device.type for p in [*loaded.model.parameters(), *loaded.target.parameters()]} == {"meta"}


@needs_cuda
def test_a_cpu_checkpoint_plans_on_cuda_like_on_the_cpu(tmp_path):
    agent = tiny_agent()
    save_agent(tmp_path / "agent.pt", agent, "cartpole-swingup")
    cuda = load_agent(tmp_path / "agent.pt", device="cuda")
    obs = torch.randn(4, 5)
    on_cpu = agent.plan(obs, True, LATE, True, EpisodeNoise.seeded(range(4)))
    on_cuda = cuda.plan(obs, True, LATE, True, EpisodeNoise.seeded(range(4)))
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=1e-4, atol=1e-4)
    save_agent(tmp_path / "cuda.pt", cuda, "cartpole-swingup")
    back = load_agent(tmp_path / "cuda.pt")
    assert all(p.device.type == "cpu" for p in back.model.parameters())


@needs_cuda
def test_graphs_mode_replays_a_captured_plan_on_cuda():
    agent = tiny_agent(device="cuda", plan_mode="graphs")
    obs = torch.randn(16, 5, device="cuda")
    actions = [agent.plan(obs, True, LATE, t == 0) for t in range(3)]
    assert all(a.shape == (16, 2) and a.abs().max() <= 1 for a in actions)
    assert len(agent.planner._captured) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available")
def test_train_on_cuda_without_a_gpu_is_one_line_and_writes_nothing(tmp_path, capsys):
    from benchmarks.cli import main

    out = tmp_path / "run"
    assert main(["train", "tdmpc", "--preset", "tiny", "--steps", "100", "--device", "cuda", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0] and not out.exists()


@needs_cuda
def test_tiny_training_runs_on_cuda(tmp_path):
    from agents.tdmpc.train import TrainArgs, train

    out = train(TrainArgs(task="cartpole-swingup", steps=800, preset="tiny", out_dir=str(tmp_path / "run"),
                          eval_freq=800, eval_episodes=1, progress=False, device="cuda"))
    assert load_agent(out / "agent.pt", device="cpu").step == 100


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    env = make_env("cartpole-swingup", seed=0)
    agent = tiny_agent(env.observation_space.shape[0], env.action_space.shape[0])
    agent.step = LATE
    path = tmp_path_factory.mktemp("agent") / "agent.pt"
    save_agent(path, agent, "cartpole-swingup")
    return path


def test_the_use_case_scores_with_the_evaluator_it_is_given(tiny_checkpoint):
    from benchmarks.usecases import get_usecase

    def usecase(evaluator: str):
        return get_usecase("tdmpc-cartpole-swingup", str(tiny_checkpoint), episodes=2, calib_episodes=1,
                           evaluator=evaluator)

    lockstep, sequential, legacy = usecase("lockstep"), usecase("sequential"), usecase("legacy")
    scores = [u.evaluate(u.load(), 0) for u in (lockstep, sequential)]
    assert scores[0] == pytest.approx(scores[1], rel=1e-4)
    assert len(lockstep.visits().obs) == len(legacy.visits().obs) == len(lockstep.visits().actions)
    torch.testing.assert_close(lockstep.visits().obs[0], legacy.visits().obs[0])  # same reset seed
    with pytest.raises(ValueError, match="evaluator"):
        usecase("fast")


def test_lockstep_is_the_default_evaluator_and_rows_record_theirs(tiny_checkpoint):
    from benchmarks.sweep.cells import suite_cells
    from benchmarks.sweep.suite import parse_suite
    from benchmarks.sweep.worker import Worker

    raw = {"name": "t", "model": "tdmpc-cartpole-swingup", "methods": ["torch-l2"], "checkpoint": str(tiny_checkpoint),
           "model_options": {"episodes": 1, "calib_episodes": 1}}
    worker = Worker.create(parse_suite(raw, ["tdmpc-<task>"], ["torch-l2"]))
    row, _ = worker.run(suite_cells(worker.suite)[0])
    assert worker.usecase.evaluator == "lockstep" and row["evaluator"] == "lockstep"


def test_device_is_checked_in_suites_and_left_out_of_cell_fingerprints(tiny_checkpoint):
    import dataclasses

    from benchmarks.sweep.cells import cell_fingerprinter, suite_cells
    from benchmarks.sweep.suite import SuiteError, parse_suite
    from benchmarks.usecases import get_usecase

    raw = {"name": "t", "model": "tdmpc-cartpole-swingup", "methods": ["torch-l2"], "checkpoint": str(tiny_checkpoint)}
    with pytest.raises(SuiteError, match="device"):
        parse_suite({**raw, "device": "gpu"}, ["tdmpc-<task>"], ["torch-l2"])
    suite = parse_suite({**raw, "device": "auto"}, ["tdmpc-<task>"], ["torch-l2"])
    usecase = get_usecase(suite.model, suite.checkpoint)
    cell = suite_cells(suite)[1]
    on_cpu = cell_fingerprinter(dataclasses.replace(suite, device="cpu"), usecase)(cell)
    assert cell_fingerprinter(suite, usecase)(cell) == on_cpu


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available")
def test_bench_on_cuda_without_a_gpu_is_one_line_and_writes_nothing(tmp_path, capsys):
    from benchmarks.cli import main

    assert main(["bench", "--suite", "tdmpc-quick", "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0] and not (tmp_path / "r").exists()


@needs_cuda
def test_the_tiny_suite_runs_on_cuda(tiny_checkpoint, tmp_path):
    from benchmarks.sweep.runner import run_suite
    from benchmarks.sweep.suite import parse_suite
    from benchmarks.sweep.store import read_csv

    suite = parse_suite({"name": "tiny-cuda", "model": "tdmpc-cartpole-swingup", "methods": ["torch-l2", "grid"],
                         "sparsities": [0.5], "seeds": [0], "checkpoint": str(tiny_checkpoint), "device": "cuda",
                         "model_options": {"episodes": 2, "grid_episodes": 1, "calib_episodes": 1,
                                           "evaluator": "lockstep"},
                         "method_options": {"grid": {"budget": 2}}}, ["tdmpc-<task>"], ["torch-l2", "grid"])
    store = run_suite(suite, root=tmp_path, quiet=True)
    rows = read_csv(store.root / "metrics.csv")
    assert len(rows) == 3 and all(r["metric"] == r["metric"] for r in rows)
    assert store.run_info()["device"] == "cuda"
