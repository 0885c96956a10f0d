"""Small models the pruning library was not written for, each with a ready `PruningProblem`.

- `WorldModel`: TD-MPC2-style world model: flat Linear/LayerNorm/Mish layers, a SimNorm latent (softmax over
  groups of 8), a reward head and an ensemble of three Q heads, a two-step forward.
- `ConvAutoencoder`: Conv2d encoder, Linear bottleneck, Unflatten, ConvTranspose2d decoder.
- `PixelPolicy`: a Conv2d stack flattened into an MLP policy.
The data are real MNIST digits for the autoencoder and seeded random tensors for the others.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from pruning import PruningProblem

SIMNORM_DIM = 8


class SimNorm(nn.Module):
    """Softmax over consecutive groups of `dim` features (TD-MPC2's simplicial normalisation)."""

    def __init__(self, dim: int = SIMNORM_DIM) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return F.softmax(x.view(*shape[:-1], -1, self.dim), dim=-1).view(shape)


def _block(n_in: int, n_out: int) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.LayerNorm(n_out), nn.Mish()]


class WorldModel(nn.Module):
    """Encoder -> SimNorm latent; dynamics(z, a) -> SimNorm latent; reward(z, a); three Q(z, a) heads."""

    def __init__(self, obs: int = 10, act: int = 3, latent: int = 48, hidden: int = 32) -> None:
        super().__init__()
        self.encoder = nn.Sequential(*_block(obs, hidden), nn.Linear(hidden, latent), SimNorm())
        self.dynamics = nn.Sequential(*_block(latent + act, hidden), nn.Linear(hidden, latent), SimNorm())
        self.reward = nn.Sequential(*_block(latent + act, hidden), nn.Linear(hidden, 1))
        self.qs = nn.ModuleList(nn.Sequential(*_block(latent + act, hidden), nn.Linear(hidden, 1)) for _ in range(3))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Two steps of latent dynamics from `obs` under actions action[:, 0] and action[:, 1]."""
        z = self.encoder(obs)
        rewards, values = [], []
        for a in (action[:, 0], action[:, 1]):
            za = torch.cat([z, a], dim=-1)
            rewards.append(self.reward(za))
            values.append(torch.cat([q(za) for q in self.qs], dim=-1))
            z = self.dynamics(za)
        return z, torch.cat(rewards, dim=-1), torch.stack(values, dim=1)


WORLD_COMPONENTS = {"encoder": "encoder", "dynamics": "dynamics", "reward": "reward", "q": "qs"}
WORLD_OUTPUTS = ["reward.3", "qs.0.3", "qs.1.3", "qs.2.3"]


class ConvAutoencoder(nn.Module):
    """28x28 images: Conv2d x2 -> Flatten -> Linear bottleneck -> Linear -> Unflatten -> ConvTranspose2d x2."""

    def __init__(self, channels: int = 16, latent: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * channels * 49, latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent, 2 * channels * 49), nn.ReLU(), nn.Unflatten(1, (2 * channels, 7, 7)),
            nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(channels, 1, 4, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class PixelPolicy(nn.Module):
    """3x24x24 pixels -> Conv2d stack (one depthwise) -> Flatten -> MLP -> action."""

    def __init__(self, act: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 12, 3, stride=2), nn.BatchNorm2d(12), nn.ReLU(),
            nn.Conv2d(12, 12, 3, groups=12), nn.ReLU(),
            nn.Conv2d(12, 16, 3, stride=2), nn.ReLU(), nn.Flatten())
        self.policy = nn.Sequential(nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.policy(self.encoder(x))


def seeded(seed: int, *shape: int) -> torch.Tensor:
    """Standard normal tensor from a generator seeded with `seed`."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _distillation(model: nn.Module, run: Callable[[nn.Module, Any], Any], batches: list[Any], heldout: Any):
    """Metric and surrogate: mean squared distance of a model's outputs on fixed inputs to the dense model's
    outputs, slightly perturbed."""
    with torch.no_grad():
        targets = [_perturbed(_flat(run(model, batch))) for batch in batches]
        heldout_target = _perturbed(_flat(run(model, heldout)))

    def surrogate(pruned: nn.Module, step: int) -> torch.Tensor:
        batch, target = (heldout, heldout_target) if step < 0 else (batches[step % len(batches)],
                                                                     targets[step % len(batches)])
        return F.mse_loss(_flat(run(pruned, batch)), target)

    def metric(pruned: nn.Module) -> float:
        with torch.no_grad():
            return -float(surrogate(pruned, -1))

    return metric, surrogate


def _perturbed(target: torch.Tensor) -> torch.Tensor:
    """The dense outputs plus a little fixed noise: a task the dense model does not solve exactly, so the
    surrogate has a gradient at the dense model (Taylor ranking needs one)."""
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(target.numel()))
    return target + 0.05 * target.std() * noise


def _flat(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs.flatten(1)
    return torch.cat([o.flatten(1) for o in outputs], dim=1)


def world_inputs(seed: int, batch: int = 16) -> dict[str, torch.Tensor]:
    """Observations and two steps of actions."""
    return {"obs": seeded(seed, batch, 10), "action": torch.tanh(seeded(seed + 1000, batch, 2, 3))}


def run_world(model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The world model's forward on a dict of inputs."""
    return model(inputs["obs"], inputs["action"])


def predictions(model: nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """What the world model is judged by: its rewards and Q values (the latent's width may change)."""
    return run_world(model, inputs)[1:]


def world_problem(latent_prunable: bool = True, round_to: Any = None, **kwargs) -> PruningProblem:
    """The world model (seeded init) with a distillation metric and surrogate."""
    torch.manual_seed(0)
    model = WorldModel().eval()
    metric, surrogate = _distillation(model, predictions, [world_inputs(s) for s in range(4)], world_inputs(99))
    return PruningProblem(model, WORLD_COMPONENTS, WORLD_OUTPUTS, example_inputs=world_inputs(7, batch=4),
                          forward_fn=run_world, latent_prunable=latent_prunable, metric=metric,
                          surrogate=surrogate, round_to=round_to, **kwargs)


def _call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def mnist_images(count: int, offset: int = 0) -> torch.Tensor:
    """`count` real MNIST training digits as (count, 1, 28, 28) floats in [0, 1]."""
    from envs import mnist
    images = mnist.load_mnist()["train"].x[offset:offset + count]
    return torch.as_tensor(images, dtype=torch.float32).view(-1, 1, 28, 28)


def conv_ae_problem(**kwargs) -> PruningProblem:
    """The conv autoencoder (seeded init) on MNIST digits, judged by reconstruction against the dense model."""
    torch.manual_seed(0)
    model = ConvAutoencoder().eval()
    images = mnist_images(80)
    metric, surrogate = _distillation(model, _call, [images[i:i + 16] for i in range(0, 64, 16)], images[64:])
    return PruningProblem(model, {"encoder": "encoder", "decoder": "decoder"}, ["decoder.5"],
                          example_inputs=images[:4], metric=metric, surrogate=surrogate, **kwargs)


def pixel_problem(**kwargs) -> PruningProblem:
    """The pixel policy (seeded init) on random images."""
    torch.manual_seed(0)
    model = PixelPolicy().eval()
    metric, surrogate = _distillation(model, _call, [seeded(s, 16, 3, 24, 24) for s in range(4)],
                                      seeded(99, 16, 3, 24, 24))
    return PruningProblem(model, {"encoder": "encoder", "policy": "policy"}, ["policy.2"],
                          example_inputs=seeded(7, 4, 3, 24, 24), metric=metric, surrogate=surrogate, **kwargs)
