"""TD-MPC (Hansen et al., 2022) for CPUs: TOLD model, MPPI planner, agent, replay, training."""
from agents.tdmpc.agent import TDMPC
from agents.tdmpc.buffer import ReplayBuffer
from agents.tdmpc.checkpoint import load_agent, save_agent
from agents.tdmpc.config import PRESETS, TDMPCConfig, preset
from agents.tdmpc.model import COMPONENTS, TOLD, output_layers, trace_forward
from agents.tdmpc.planner import MPPIPlanner

__all__ = ["COMPONENTS", "MPPIPlanner", "PRESETS", "ReplayBuffer", "TDMPC", "TDMPCConfig", "TOLD",
           "load_agent", "output_layers", "preset", "save_agent", "trace_forward"]
