"""Executors: where the cells of a sweep run. The runner stores whatever they yield, as it arrives.

`local` evaluates cells in this process, or in a pool of spawned processes on this machine (the default).
`ray` makes every cell a Ray task: on a local Ray instance, or on a running cluster given its address.
Each Ray worker process loads the dense model and data once and reuses them for every cell it runs; a
worker that dies mid-cell has its task retried, and a cell that still fails is left for the next run
(rows are written only by the driver, one atomic file per finished cell, so none is lost or duplicated).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import active_children, get_context
from typing import Any, Iterator, Protocol

import torch

from benchmarks.sweep.worker import Worker, init_process, run_in_process
from benchmarks.sweep.store import Cell, fingerprint
from benchmarks.sweep.suite import Suite, suite_to_dict

Finished = tuple[Cell, dict[str, Any], dict[str, Any]]
"""A finished cell: the cell, its row and its side data."""

EXECUTORS = ("local", "ray")
CRASH_HOOK = "CTRLPRUNE_TEST_CRASH_FILE"
"""Test-only: when this environment variable names an existing file, the first Ray task to delete it
kills its own worker process (exercises the retry path)."""


CELL_THREADS = 1
"""torch threads per cell worker: small networks and planning gain nothing from more, and two threads on a
shared core can be many times slower; scale out with `workers` instead."""


class ExecutorError(RuntimeError):
    """An executor cannot run (e.g. Ray is not installed); the message says what to do."""


class Executor(Protocol):
    """Runs cells and yields each as soon as it finishes, in any order."""

    def run(self, suite: Suite, todo: list[Cell], workers: int) -> Iterator[Finished]: ...


@dataclass(frozen=True)
class LocalExecutor:
    """Cells in this process (workers=1) or in a pool of spawned processes, each with its own dense model.
    When the run stops early (Ctrl-C, an error), the pool's processes are ended at once, mid-cell."""

    def run(self, suite: Suite, todo: list[Cell], workers: int) -> Iterator[Finished]:
        if workers == 1:
            init_process(suite, CELL_THREADS)
            yield from (run_in_process(c) for c in todo)
            return
        before = set(active_children())
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=init_process,
                                   initargs=(suite, CELL_THREADS))
        try:
            futures = [pool.submit(run_in_process, c) for c in todo]
            for future in as_completed(futures):
                yield future.result()
        except BaseException:  # Ctrl-C, a failed cell, or the consumer stopped: do not wait for running cells
            pool.shutdown(wait=False, cancel_futures=True)
            for process in set(active_children()) - before:
                process.terminate()
            raise
        pool.shutdown()


@dataclass(frozen=True)
class RayConfig:
    """Settings of the Ray executor."""

    address: str | None = None
    """cluster to join, e.g. 'head:6379' or 'auto'; None starts a local instance on this machine"""
    cpus_per_cell: float = 1.0
    """CPUs each cell's task declares (also its torch thread count, at least 1)"""
    max_retries: int = 3
    """re-runs of a cell whose worker process died; after that the cell is left for the next run"""


@dataclass(frozen=True)
class RayExecutor:
    """Every cell a Ray task; finished rows stream back to the driver, which stores them."""

    config: RayConfig = RayConfig()

    def __post_init__(self) -> None:
        _import_ray()  # fail before any result is touched

    def run(self, suite: Suite, todo: list[Cell], workers: int) -> Iterator[Finished]:
        ray = _import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            _connect(ray, self.config.address, workers)
        task = ray.remote(_run_cell).options(num_cpus=self.config.cpus_per_cell, max_retries=self.config.max_retries)
        suite_ref = ray.put(suite)
        cwd = os.getcwd()
        pending = [task.remote(suite_ref, cell, self.config.cpus_per_cell, cwd) for cell in todo]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            for ref in pending:
                ray.cancel(ref)
            if started_here:
                ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError("the ray executor needs Ray: pip install '.[ray]'") from None
    return ray


def _connect(ray: Any, address: str | None, workers: int) -> None:
    """Join the cluster at `address`, or start a local instance with `workers` CPUs on the loopback address.

    Ray 2.60 still opens some of its ports on every interface; its token authentication (on by default for
    local instances) guards them.
    """
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1")


_CACHE: dict[str, Worker] = {}
"""This process's Worker, by suite: the dense model and data load once per Ray worker process."""


def cached_worker(suite: Suite, threads: int) -> Worker:
    """The Worker of `suite` in this process, created on first use (an earlier suite's is dropped)."""
    key = fingerprint(suite_to_dict(suite))
    if key not in _CACHE:
        _CACHE.clear()
        torch.set_num_threads(threads)
        _CACHE[key] = Worker.create(suite)
    return _CACHE[key]


def _run_cell(suite: Suite, cell: Cell, cpus: float, cwd: str) -> Finished:
    """Body of a cell's Ray task, run in a Ray worker process from the driver's directory when it exists here."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    if os.path.isdir(cwd):
        os.chdir(cwd)  # relative checkpoint paths resolve as on the driver (same repository path on every node)
    _crash_if_armed()
    return (cell, *cached_worker(suite, max(1, int(cpus))).run(cell))


def _crash_if_armed() -> None:
    path = os.environ.get(CRASH_HOOK)
    if not path:
        return
    try:
        os.unlink(path)  # atomic: exactly one task wins
    except FileNotFoundError:
        return
    os._exit(1)


def make_executor(name: str, address: str | None = None) -> Executor:
    """The executor called `name` (one of EXECUTORS); `address` is the Ray cluster to join."""
    if name == "local":
        if address:
            raise ExecutorError("--address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(RayConfig(address=address))
    raise ExecutorError(f"unknown executor {name!r}; valid executors: {list(EXECUTORS)}")
