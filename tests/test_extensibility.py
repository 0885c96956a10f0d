"""The worked examples of docs/EXTENDING.md: a new task, a new agent (use case) and a new pruning method run through a suite."""
import contextlib
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest
import torch

import envs.registry
import pruning.registry
from benchmarks.cli import main
from benchmarks.sweep.runner import run_suite
from benchmarks.sweep.store import read_csv
from benchmarks.sweep.suite import Suite, SuiteError, load_suite, parse_suite
from benchmarks.usecases import base as usecase_base
from benchmarks.usecases import list_usecases
from envs import list_tasks, make_env
from pruning import list_methods

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("examples.pendulum_mlp", "examples.l1_method")


@contextlib.contextmanager
def examples_registered() -> Iterator[ModuleType]:
    """Import (or re-import) the examples, and leave the registries as they were afterwards (other tests list them)
    and the examples unimported (a later `--plugin examples.pendulum_mlp` registers them again)."""
    registries = (pruning.registry._METHODS, usecase_base._REGISTRY, envs.registry._EXTRA)
    saved = [dict(r) for r in registries]
    try:
        for name in EXAMPLES:
            importlib.reload(sys.modules[name]) if name in sys.modules else importlib.import_module(name)
        yield sys.modules["examples.pendulum_mlp"]
    finally:
        for registry, before in zip(registries, saved):
            registry.clear()
            registry.update(before)
        for name in EXAMPLES:
            sys.modules.pop(name, None)


@pytest.fixture
def pendulum() -> Iterator[ModuleType]:
    """The Pendulum example module, with its task, use case and the `l1-uniform` method registered."""
    with examples_registered() as module:
        yield module


def test_registered_task_runs_short_episodes(pendulum) -> None:
    assert pendulum.TASK in list_tasks()
    env = make_env(pendulum.TASK, seed=3)
    env.reset(seed=3)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps, done = steps + 1, terminated or truncated
    assert steps == 120


def test_new_agent_and_method_run_through_a_suite(tmp_path, pendulum) -> None:
    assert "pendulum-mlp" in list_usecases() and "l1-uniform" in list_methods()
    raw = {"name": "pendulum", "model": "pendulum-mlp", "methods": ["l1-uniform", "gradient", "torch-random"],
           "sparsities": [0.3], "seeds": [0], "method_options": {"gradient": {"steps": 40}}}
    suite = parse_suite(raw, list_usecases(), list_methods())
    assert isinstance(suite, Suite)
    run_suite(suite, root=tmp_path, quiet=True)
    rows = read_csv(tmp_path / "pendulum" / "metrics.csv")
    by_method = {r["method"]: r for r in rows}
    assert list(by_method) == ["dense", "l1-uniform", "gradient", "torch-random"]
    dense = by_method["dense"]
    assert dense["metric_name"] == "return" and dense["params"] == 3 * 64 + 64 + 64 * 64 + 64 + 64 * 32 + 32 + 33
    for method in ("l1-uniform", "gradient", "torch-random"):
        row = by_method[method]
        assert row["in_band"] and abs(row["achieved_sparsity"] - 0.3) <= 0.01, row
        assert "body.0:" in row["widths"] and "head.0:" in row["widths"]
    assert by_method["l1-uniform"]["params"] < dense["params"]
    expert_return = pendulum.PendulumMLPUseCase().evaluate(pendulum.expert, 0)[0]
    assert abs(dense["metric"] - expert_return) < 0.1 * abs(expert_return)  # the cloned policy swings up like its expert


def test_plugins_reach_worker_processes(tmp_path, pendulum) -> None:
    """One plugin from --plugin, one from the suite's `plugins` field; cells run in 2 spawned processes."""
    toml = tmp_path / "pendulum.toml"
    toml.write_text('name = "pendulum"\nmodel = "pendulum-mlp"\nmethods = ["l1-uniform"]\nsparsities = [0.3]\n'
                    'seeds = [0]\nplugins = ["examples.l1_method"]\n')
    argv = ["--plugin", "examples.pendulum_mlp", "bench", "--suite", str(toml), "--out", str(tmp_path),
            "--workers", "2", "--quiet"]
    assert main(argv) == 0
    rows = read_csv(tmp_path / "pendulum" / "metrics.csv")
    assert [r["method"] for r in rows] == ["dense", "l1-uniform"] and rows[1]["in_band"]
    run = json.loads((tmp_path / "pendulum" / "run.json").read_text())
    assert run["suite"]["plugins"] == ["examples.pendulum_mlp", "examples.l1_method"]


@pytest.mark.parametrize("plugins, message", [(["no_such_module_here"], "cannot import"),
                                              (["bad name"], "module names"), ([], "non-empty list")])
def test_suite_plugins_are_checked(tmp_path, plugins, message) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text(f'name = "s"\nmodel = "ae"\nmethods = ["tp-magnitude"]\nplugins = {json.dumps(plugins)}\n')
    with pytest.raises(SuiteError, match=message):
        load_suite(str(toml))


def test_registries_are_restored_afterwards() -> None:
    with examples_registered():
        assert "l1-uniform" in list_methods() and "pendulum-mlp" in list_usecases()
    assert "l1-uniform" not in list_methods() and "pendulum-mlp" not in list_usecases()
    assert "pendulum-short" not in list_tasks()


def test_extending_guide_sections_point_at_the_examples() -> None:
    readme = (ROOT / "docs" / "EXTENDING.md").read_text()
    assert "docs/EXTENDING.md" in (ROOT / "README.md").read_text()
    for section, example in (("## Add an agent", "examples/pendulum_mlp.py"), ("## Add an environment", "examples/pendulum_mlp.py"),
                             ("## Add a pruning method", "examples/l1_method.py")):
        assert section in readme
        assert example in readme.split(section)[1].split("\n## ")[0]
