"""The TD-MPC use cases `tdmpc-<task>` (registered on import)."""
from benchmarks.usecases.tdmpc import usecase  # noqa: F401
