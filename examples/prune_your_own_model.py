"""Worked example: prune your own model with the public API, end to end.

The model is a TD-MPC2-style world model written here from scratch: an encoder into a SimNorm latent
(softmax over groups of 8 features), latent dynamics, a reward head and an ensemble of three Q heads. It is
fitted for a few seconds to a small random linear system, then pruned at one target sparsity by a
torch-pruning baseline, the component grid and the gradient method. The latent feeds SimNorm's
view(..., 8), so it is pruned in whole blocks of 8 (`round_to={"latent": 8}`).

    python -m examples.prune_your_own_model                  # about a minute on one core
    python -m examples.prune_your_own_model --target 0.3 --train-steps 100 --budget 8 --gradient-steps 20
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from pruning import PruneResult, PruningProblem, build_groups, estimate_grid, format_group_table, get_method

OBS, ACT, LATENT, HIDDEN, HORIZON = 8, 2, 32, 64, 2


class SimNorm(nn.Module):
    """Softmax over consecutive groups of 8 latent features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(x.view(*x.shape[:-1], -1, 8), dim=-1).view(x.shape)


def mlp(n_in: int, n_out: int, last: nn.Module | None = None) -> nn.Sequential:
    """Linear -> LayerNorm -> Mish -> Linear (-> last)."""
    layers = [nn.Linear(n_in, HIDDEN), nn.LayerNorm(HIDDEN), nn.Mish(), nn.Linear(HIDDEN, n_out)]
    return nn.Sequential(*layers, *([last] if last is not None else []))


class WorldModel(nn.Module):
    """Encoder, dynamics, reward and three Q heads around a SimNorm latent."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = mlp(OBS, LATENT, SimNorm())
        self.dynamics = mlp(LATENT + ACT, LATENT, SimNorm())
        self.reward = mlp(LATENT + ACT, 1)
        self.qs = nn.ModuleList(mlp(LATENT + ACT, 1) for _ in range(3))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards and Q values (batch, HORIZON[, 3]) of rolling the latent forward under `actions`."""
        z, rewards, values = self.encoder(obs), [], []
        for t in range(actions.shape[1]):
            za = torch.cat([z, actions[:, t]], dim=-1)
            rewards.append(self.reward(za).squeeze(-1))
            values.append(torch.cat([q(za) for q in self.qs], dim=-1))
            z = self.dynamics(za)
        return torch.stack(rewards, dim=1), torch.stack(values, dim=1)


class LinearSystem:
    """x' = A x + B u with reward -|x|^2 - 0.1 |u|^2 (a fixed random stable system)."""

    def __init__(self, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.a = torch.linalg.qr(torch.randn(OBS, OBS, generator=generator))[0] * 0.9
        self.b = torch.randn(OBS, ACT, generator=generator) * 0.3
        self.generator = generator

    def batch(self, size: int) -> dict[str, torch.Tensor]:
        """Observations, actions for HORIZON steps and the rewards they earn."""
        obs = torch.randn(size, OBS, generator=self.generator)
        u = torch.tanh(torch.randn(size, HORIZON, ACT, generator=self.generator))
        x, rewards = obs, []
        for t in range(HORIZON):
            rewards.append(-(x ** 2).sum(-1) - 0.1 * (u[:, t] ** 2).sum(-1))
            x = x @ self.a.T + u[:, t] @ self.b.T
        return {"obs": obs, "actions": u, "rewards": torch.stack(rewards, 1)}


def run(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward every method traces and the checks run."""
    return model(batch["obs"], batch["actions"])


def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Reward error plus every Q head's error against the reward-to-go (no discount)."""
    rewards, values = run(model, batch)
    to_go = batch["rewards"].flip(1).cumsum(1).flip(1)
    return F.mse_loss(rewards, batch["rewards"]) + F.mse_loss(values, to_go[..., None].expand_as(values))


def train(steps: int, seed: int = 0) -> tuple[WorldModel, LinearSystem]:
    """Fit a fresh world model to the linear system with Adam."""
    torch.manual_seed(seed)
    model, system = WorldModel(), LinearSystem(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        loss(model, system.batch(256)).backward()
        optimizer.step()
    return model.eval(), system


def make_problem(model: WorldModel, system: LinearSystem) -> PruningProblem:
    """The pruning problem: components, output heads, a block size for the latent, metric and surrogate."""
    train_batches = [system.batch(256) for _ in range(8)]
    validation = system.batch(1024)

    def surrogate(pruned: nn.Module, step: int) -> torch.Tensor:
        return loss(pruned, validation if step < 0 else train_batches[step % len(train_batches)])

    def metric(pruned: nn.Module) -> float:
        with torch.no_grad():
            return -float(loss(pruned, validation))

    heads = ["reward.3"] + [f"qs.{i}.3" for i in range(3)]
    return PruningProblem(model, {"encoder": "encoder", "dynamics": "dynamics", "reward": "reward", "q": "qs"},
                          heads, example_inputs=system.batch(4), forward_fn=run, metric=metric,
                          surrogate=surrogate, round_to={"latent": 8})


def main(argv: list[str] | None = None) -> dict[str, PruneResult]:
    """Train, show the groups and the grid's size, prune with three methods and print what came out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.5, help="target sparsity")
    parser.add_argument("--eps", type=float, default=0.02, help="tolerance of the band")
    parser.add_argument("--train-steps", type=int, default=600)
    parser.add_argument("--budget", type=int, default=64, help="grid: in-band candidates evaluated at most")
    parser.add_argument("--gradient-steps", type=int, default=200)
    args = parser.parse_args(argv)

    model, system = train(args.train_steps)
    problem = make_problem(model, system)
    print(format_group_table(build_groups(problem)))
    estimate = estimate_grid(problem, args.target, eps=args.eps, budget=args.budget)
    print(f"grid: {estimate.combinations} combinations over {estimate.axes}, {estimate.in_band} in band, "
          f"evaluating {estimate.evaluations}")
    print(f"dense: validation loss {-problem.metric(model):.4f}")
    options = {"tp-magnitude": {}, "grid": {"budget": args.budget}, "gradient": {"steps": args.gradient_steps}}
    results = {}
    for method, extra in options.items():
        started = time.perf_counter()
        result = get_method(method)(problem, args.target, eps=args.eps, seed=0, **extra)
        results[method] = result
        print(f"{method}: sparsity {result.achieved:.3f} ({'in band' if result.in_band else 'OUT OF BAND'}), "
              f"validation loss {-problem.metric(result.model):.4f}, latent {result.widths['dynamics.3']} of "
              f"{LATENT}, {time.perf_counter() - started:.1f} s")
    return results


if __name__ == "__main__":
    main()
