"""Task registry: dm_control suite tasks and gymnasium environments behind `make_env`."""
from envs.dmc import DMCEnv, DMCSpec, action_repeat_for
from envs.registry import (ActionRepeat, UnknownTaskError, action_repeat_of, default_action_repeat, is_known_task,
                           list_tasks, make_env, register_task)

__all__ = ["ActionRepeat", "DMCEnv", "DMCSpec", "UnknownTaskError", "action_repeat_for", "action_repeat_of",
           "default_action_repeat", "is_known_task", "list_tasks", "make_env", "register_task"]
