"""Task registry: dm_control suite tasks and gymnasium environments behind `make_env`."""
from envs.dmc import DMCEnv, DMCSpec, action_repeat_for
from envs.registry import UnknownTaskError, list_tasks, make_env, register_task

__all__ = ["DMCEnv", "DMCSpec", "UnknownTaskError", "action_repeat_for", "list_tasks", "make_env",
           "register_task"]
