"""The Ray executor gives the local executor's rows, survives a worker dying mid-cell, and fails clearly without Ray."""
import os
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.sweep.suite import registered_names
from benchmarks.sweep.executors import CRASH_HOOK, LocalExecutor, RayConfig, RayExecutor, cached_worker
from benchmarks.sweep.runner import run_suite
from benchmarks.sweep.store import TIMING_COLUMNS, read_csv
from benchmarks.sweep.suite import Suite, load_suite

SUITE_TOML = """name = "ray-check"
model = "ae"
methods = ["tp-magnitude", "tp-random"]
sparsities = [0.2, 0.5]
seeds = [0]
"""


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: str(v) for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]  # str: nan == nan


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    path = tmp_path_factory.mktemp("suite") / "ray-check.toml"
    path.write_text(SUITE_TOML)
    return load_suite(str(path), *registered_names())


@pytest.fixture(scope="module")
def crash_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Arming file of the crash hook; its variable is set before Ray starts so every Ray worker sees it."""
    return tmp_path_factory.mktemp("hook") / "crash-once"


@pytest.fixture(scope="module")
def ray_instance(crash_file: Path):
    """One local two-CPU Ray instance shared by this module's tests (start-up costs seconds)."""
    ray = pytest.importorskip("ray")
    os.environ[CRASH_HOOK] = str(crash_file)
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray
    ray.shutdown()
    os.environ.pop(CRASH_HOOK, None)


@pytest.fixture(scope="module")
def local_rows(suite: Suite, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    store = run_suite(suite, root=tmp_path_factory.mktemp("local"), quiet=True, executor=LocalExecutor())
    return read_csv(store.root / "metrics.csv")


def test_ray_rows_equal_local_rows(ray_instance, suite: Suite, local_rows: list[dict], tmp_path: Path) -> None:
    store = run_suite(suite, root=tmp_path, quiet=True, executor=RayExecutor())
    assert len(local_rows) == 5
    assert _without_timing(read_csv(store.root / "metrics.csv")) == _without_timing(local_rows)


def test_worker_killed_mid_cell_is_retried(ray_instance, suite: Suite, local_rows: list[dict], tmp_path: Path,
                                           crash_file: Path) -> None:
    crash_file.touch()
    store = run_suite(suite, root=tmp_path, quiet=True, executor=RayExecutor(RayConfig(max_retries=2)))
    assert not crash_file.exists(), "one task should have consumed the hook and killed its worker"
    assert len(list(store.cells_dir.glob("*.json"))) == 5
    assert _without_timing(read_csv(store.root / "metrics.csv")) == _without_timing(local_rows)


def test_cell_out_of_retries_is_left_for_the_next_run(ray_instance, suite: Suite, local_rows: list[dict],
                                                      tmp_path: Path, crash_file: Path) -> None:
    crash_file.touch()
    with pytest.raises(ray_instance.exceptions.WorkerCrashedError):
        run_suite(suite, root=tmp_path, quiet=True, executor=RayExecutor(RayConfig(max_retries=0)))
    cells = tmp_path / suite.name / "cells"
    assert len(list(cells.glob("*.json"))) < 5
    store = run_suite(suite, root=tmp_path, quiet=True, executor=RayExecutor())
    assert _without_timing(read_csv(store.root / "metrics.csv")) == _without_timing(local_rows)


def test_worker_is_cached_per_process(suite: Suite) -> None:
    assert cached_worker(suite, 1) is cached_worker(suite, 1)


def test_ray_missing_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                       tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code = main(["bench", "--suite", "ae-tiny", "--out", str(tmp_path / "out"), "--fresh", "--executor", "ray"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "ctrlprune bench: error: the ray executor needs Ray: pip install '.[ray]'"
    assert not (tmp_path / "out").exists()
