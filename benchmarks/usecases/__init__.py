"""Use cases: a trained model plus the task that scores it. Importing this package registers them."""
from benchmarks.usecases.base import UseCase, get_usecase, is_known_usecase, list_usecases, register_usecase
from benchmarks.usecases import ae, tdmpc  # noqa: F401  (registers "ae" and "tdmpc-<task>")

__all__ = ["UseCase", "get_usecase", "is_known_usecase", "list_usecases", "register_usecase"]
