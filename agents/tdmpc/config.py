"""Every TD-MPC hyperparameter in one dataclass, with named presets."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TDMPCConfig:
    """TD-MPC hyperparameters; defaults are those of the published TD-MPC (`preset("upstream")`).

    Schedules and `seed_steps` count agent steps (env steps / action repeat), as upstream.
    """

    # architecture
    enc_dim: int = 256
    """Hidden width of the state encoder."""
    mlp_dim: int = 512
    """Hidden width of dynamics, reward, policy and Q networks."""
    latent_dim: int = 50
    """Width of the latent state z."""
    # planning
    iterations: int = 6
    """MPPI iterations per planned action."""
    num_samples: int = 512
    """Gaussian action sequences sampled per iteration."""
    num_elites: int = 64
    """Highest-value sequences used to refit the sampling distribution."""
    mixture_coef: float = 0.05
    """Fraction of num_samples added as policy (pi) rollouts."""
    min_std: float = 0.05
    """Noise std of policy actions in planning and the final value of std_schedule."""
    temperature: float = 0.5
    """Inverse temperature of the exponential elite weights."""
    momentum: float = 0.1
    """Weight of the previous mean when refitting the sampling mean."""
    horizon: int = 5
    """Planning horizon and length of the training rollouts."""
    # learning
    discount: float = 0.99
    """Reward discount."""
    batch_size: int = 512
    """Sub-trajectories per update."""
    reward_coef: float = 0.5
    """Weight of the reward prediction loss."""
    value_coef: float = 0.1
    """Weight of the TD value loss."""
    consistency_coef: float = 2.0
    """Weight of the latent consistency loss."""
    rho: float = 0.5
    """Per-step discount of losses along the rollout (rho ** t)."""
    lr: float = 1e-3
    """Adam learning rate of model and policy."""
    std_init: float = 0.5
    """Initial lower bound of the planner std (std_schedule start)."""
    std_schedule_steps: int = 25_000
    """Agent steps over which the planner std bound decays linearly from std_init to min_std."""
    horizon_schedule_steps: int = 25_000
    """Agent steps over which the planning horizon grows linearly from 1 to horizon."""
    per_alpha: float = 0.6
    """Prioritized replay exponent on priorities."""
    per_beta: float = 0.4
    """Prioritized replay importance-sampling exponent."""
    grad_clip_norm: float = 10.0
    """Gradient norm clip for model and policy."""
    seed_steps: int = 5000
    """Agent steps of uniform random actions before planning and updates begin."""
    update_freq: int = 2
    """Update the target network every this many updates."""
    tau: float = 0.01
    """EMA rate of the target network."""
    max_buffer_size: int = 1_000_000
    """Replay capacity in agent steps."""
    precision: str = "fp32"
    """Matmul precision of planning and updates: fp32, or bf16 (bfloat16 autocast, fp32 weights)."""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def __repr__(self) -> str:
        diff = {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}
        return f"TDMPCConfig({', '.join(f'{k}={v}' for k, v in diff.items()) or 'upstream defaults'})"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (for checkpoints and TensorBoard hparams)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TDMPCConfig":
        """Inverse of `to_dict`; unknown keys raise a ValueError naming the valid ones."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TDMPCConfig fields {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**d)


PRESETS: dict[str, TDMPCConfig] = {
    "upstream": TDMPCConfig(),
    "cpu": TDMPCConfig(mlp_dim=256, num_samples=256, num_elites=32, iterations=4,
                       batch_size=256, seed_steps=1000),
    "tiny": TDMPCConfig(enc_dim=64, mlp_dim=64, latent_dim=16, num_samples=64, num_elites=8,
                        iterations=2, horizon=3, batch_size=32, seed_steps=50,
                        std_schedule_steps=500, horizon_schedule_steps=200),
}
"""`upstream`: published TD-MPC; `cpu`: reduced sizes for 2-core CPUs; `tiny`: tests only."""


def preset(name: str, **overrides: Any) -> TDMPCConfig:
    """A named preset, optionally with some fields replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)
