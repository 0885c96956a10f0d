"""Fine-tuning after pruning: the cell axis, masks that stay applied, smaller nets that train, resumable suites."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from benchmarks.report.finetune import finetune_table, recovery_heading, recovery_table
from benchmarks.report.plots import make_plots
from benchmarks.sweep.cells import cell_fingerprinter, suite_cells
from benchmarks.sweep.runner import run_suite
from benchmarks.sweep.store import Cell, ResultsFolder
from benchmarks.sweep.suite import SuiteError, load_suite, parse_suite, registered_names
from benchmarks.usecases import get_usecase
from pruning import get_method, weight_masks


def tiny_suite(**fields) -> object:
    return parse_suite({"name": "ae-ft", "model": "ae", "methods": ["tp-magnitude", "torch-l2"],
                        "sparsities": [0.5], "seeds": [0], **fields}, *registered_names())


def test_fingerprint_includes_finetune_steps_only_when_fine_tuned() -> None:
    suite = tiny_suite(finetune_steps=[0, 5, 10], finetune_eval_at=[2, 5])
    usecase = get_usecase("ae")
    stamp = cell_fingerprinter(suite, usecase)
    plain = cell_fingerprinter(tiny_suite(), usecase)
    cell = Cell("ae", "tp-magnitude", True, 0.5, 0)
    assert stamp(cell) == plain(cell)  # cells that are not fine-tuned keep the fingerprint they had
    tuned = {steps: stamp(Cell("ae", "tp-magnitude", True, 0.5, 0, steps)) for steps in (5, 10)}
    assert len({stamp(cell), *tuned.values()}) == 3
    assert Cell("ae", "tp-magnitude", True, 0.5, 0, 5).key.endswith("__seed0__ft5") and cell.key.endswith("__seed0")
    assert len(suite_cells(suite)) == 3 * (1 + 2)


def test_finetune_fields_are_checked() -> None:
    with pytest.raises(SuiteError, match="finetune_steps must be >= 0"):
        tiny_suite(finetune_steps=[-1])
    with pytest.raises(SuiteError, match="finetune_steps"):
        tiny_suite(finetune_steps=[1.5])
    with pytest.raises(ValueError, match="finetune_replay"):
        get_usecase("tdmpc-cartpole-swingup", finetune_replay="full")
    assert load_suite("tdmpc-cartpole-swingup-finetune").finetune_steps == (10_000,)


def masked_zeros(model: torch.nn.Module) -> list[torch.Tensor]:
    """The effective weights of every masked layer where its mask is zero."""
    masks = weight_masks(dict(model.named_buffers()))
    assert masks, "a mask method leaves masks"
    return [model.get_submodule(layer).weight[mask == 0] for layer, mask in masks.items()]


def ae_train_loss(model: torch.nn.Module) -> float:
    from agents.autoencoder import mnist_tensor

    x = mnist_tensor("train")[:1024]
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model(x), x))


@pytest.mark.parametrize("method", ["torch-l2", "tp-magnitude"])
def test_autoencoder_fine_tuning_trains_the_pruned_net_and_keeps_masks(method) -> None:
    usecase = get_usecase("ae", valid_images=200, calib_images=256)
    dense = usecase.load()
    result = get_method(method)(usecase.problem(dense, 0, True), 0.5, eps=0.02, seed=0)
    shapes = {n: p.shape for n, p in result.model.named_parameters()}
    before, loss_before = usecase.evaluate(result.model, 0)[0], ae_train_loss(result.model)
    run = usecase.finetune(result.model, result, 20, [10], seed=0)
    assert {n: p.shape for n, p in run.model.named_parameters()} == shapes
    assert ae_train_loss(run.model) < loss_before
    assert [step for step, _ in run.curve] == [10] and usecase.evaluate(run.model, 0)[0] > before
    if method.startswith("torch-"):
        assert all(bool((w == 0).all()) for w in masked_zeros(run.model))


@pytest.fixture(scope="module")
def tiny_agent_usecase(tiny_agent_path):
    return get_usecase("tdmpc-cartpole-swingup", str(tiny_agent_path), episodes=1, grid_episodes=1,
                       calib_episodes=1, states=8, candidates=4, finetune_replay_episodes=1)


def model_loss(usecase, model: torch.nn.Module) -> float:
    """TD-MPC's weighted model loss of `model` (its own target) on fixed batches of the dense episodes."""
    from agents.tdmpc.buffer import ReplayBuffer

    agent = usecase.wrap(model, torch.device("cpu"))
    agent.target = copy.deepcopy(model).requires_grad_(False)  # a fine-tuned masked model copies too
    buffer = ReplayBuffer(5, 1, 2000, agent.cfg.horizon)
    for episode in usecase.dense_episodes():
        buffer.add(*episode)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        return sum(float(agent.losses(buffer.sample(64))["weighted"]) for _ in range(4))


@pytest.mark.parametrize("method", ["torch-l2", "tp-magnitude"])
def test_tdmpc_fine_tuning_lowers_the_model_loss_and_keeps_shapes_and_masks(tiny_agent_usecase, method) -> None:
    usecase = tiny_agent_usecase
    result = get_method(method)(usecase.problem(usecase.load(), 0, True), 0.5, eps=0.02, seed=0)
    shapes = {n: p.shape for n, p in result.model.named_parameters()}
    loss_before = model_loss(usecase, result.model)
    run = usecase.finetune(result.model, result, 160, [80], seed=0)  # 20 updates at action repeat 8
    assert {n: p.shape for n, p in run.model.named_parameters()} == shapes
    assert model_loss(usecase, run.model) < loss_before
    assert [step for step, _ in run.curve] == [80]
    if method.startswith("torch-"):
        assert all(bool((w == 0).all()) for w in masked_zeros(run.model))
    action = usecase.wrap(run.model).plan(usecase.visits().obs[0], eval_mode=True, step=usecase.agent().step)
    assert action.shape == (1,)


def layer_shapes(model: torch.nn.Module) -> dict[str, torch.Size]:
    """The effective weight shape of every layer (a masked layer's `weight`, not its `weight_orig`)."""
    return {name: module.weight.shape for name, module in model.named_modules() if hasattr(module, "weight")}


@pytest.mark.parametrize("method", ["gradient", "grid", "tp-magnitude", "torch-l2"])
def test_tdmpc_pruned_target_has_the_pruned_widths_and_plans(tiny_agent_usecase, method) -> None:
    usecase = tiny_agent_usecase
    options = usecase.method_options(method, {"budget": 4} if method == "grid" else None)
    result = get_method(method)(usecase.problem(usecase.load(), 0, True), 0.5, eps=0.05, seed=0, **options)
    agent = usecase.pruned_agent(result)
    assert layer_shapes(agent.target) == layer_shapes(result.model)
    assert not any(p.requires_grad for p in agent.target.parameters())
    assert agent.plan(usecase.visits().obs[0], eval_mode=True, step=usecase.agent().step).shape == (1,)


def test_tdmpc_fine_tuning_of_the_dense_agent_leaves_it_untouched(tiny_agent_usecase) -> None:
    dense = tiny_agent_usecase.load()
    saved = copy.deepcopy(dense.state_dict())
    tiny_agent_usecase.finetune(dense, None, 16, [], seed=0)
    assert all(torch.equal(saved[k], v) for k, v in dense.state_dict().items())


def test_an_interrupted_fine_tuning_suite_resumes_the_missing_cells_only(tmp_path) -> None:
    suite = tiny_suite(finetune_steps=[0, 4], finetune_eval_at=[2], model_options={"valid_images": 100,
                                                                                   "calib_images": 256})

    class Interrupt(Exception):
        pass

    def stop_after_four(cell, row) -> None:
        stored = len(list((tmp_path / "ae-ft" / "cells").glob("*.json")))
        if stored == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_suite(suite, tmp_path, quiet=True, workers=1, on_cell=stop_after_four)
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ae-ft" / "cells").glob("*.json")}
    computed = []
    run_suite(suite, tmp_path, quiet=True, workers=1, on_cell=lambda cell, row: computed.append(cell))
    assert len(first) == 4 and len(computed) == 2
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ae-ft" / "cells").glob("*.json")
            if p.name in first} == first
    rows = ResultsFolder(tmp_path / "ae-ft").rows()
    tuned = [r for r in rows if r["finetune_steps"] == 4]
    assert len(rows) == 6 and len(tuned) == 3
    for row in tuned:
        steps = [int(point.split(":")[0]) for point in row["finetune_curve"].split(";")]
        assert steps == [0, 2, 4] and row["metric_before"] == row["metric_before"]
    pruned = {(r["method"], r["finetune_steps"]): r for r in rows}
    assert pruned[("tp-magnitude", 4)]["metric_before"] == pytest.approx(pruned[("tp-magnitude", 0)]["metric"],
                                                                             rel=1e-5)
    blob = json.loads(next((tmp_path / "ae-ft" / "cells").glob("*ft4.json")).read_text())
    assert blob["row"]["finetune_steps"] == 4
    table = finetune_table(rows).splitlines()
    assert len(table) == 2 + 3 and table[4].startswith("| tp-magnitude ft4 | ")  # dense, then each method
    curve = recovery_table(rows).splitlines()[4]
    assert recovery_heading(rows) == "mean over seeds at steps 0 → 2 → 4" and curve.count(" → ") == 2
    assert curve.endswith(f"{pruned[('tp-magnitude', 4)]['metric']:.1f} |")  # one seed: the curve ends at `metric`
    names = {p.name for p in make_plots(tmp_path / "ae-ft")}
    assert {"finetune_vs_sparsity.png", "recovery_curves.png"} <= names
