"""Use case `ae`: the MNIST autoencoder, scored by PSNR on the full test set."""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from agents.autoencoder import COMPONENTS, DEFAULT_CHECKPOINT, latents, load_autoencoder, mnist_tensor, output_layers, psnr
from benchmarks.usecases.base import FineTuned, UseCase, register_usecase, require_positive
from pruning import PruneResult, PruningProblem, refresh_masked_weights

if TYPE_CHECKING:
    from benchmarks.sweep.store import ResultsFolder

RECON_IMAGES = 8
"""test images shown in reconstruction grids"""
IMAGE_SHAPE = (28, 28)


def _subset(images: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    if size >= len(images):
        return images
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:size]
    return images[idx]


@register_usecase("ae")
class AutoencoderUseCase(UseCase):
    """MNIST autoencoder: grid search scores PSNR on validation images, gradient descent the train-split MSE.

    Options: `valid_images` (validation images per grid candidate, default 2000), `calib_images`
    (train images for the gradient surrogate, default 2048, plus one held-out batch), `calib_batch` (default 256),
    `finetune_lr` (Adam learning rate of fine-tuning, constant, default 3e-4) and `finetune_batch` (train
    images per fine-tuning step, default 256).
    """

    name = "ae"
    metric_name = "psnr"
    latent_layer = "encoder.4"
    extras_level = 0.2

    def __init__(self, checkpoint: str = "", valid_images: int = 2000, calib_images: int = 2048,
                 calib_batch: int = 256, finetune_lr: float = 3e-4, finetune_batch: int = 256) -> None:
        require_positive("model 'ae'", valid_images=valid_images, calib_images=calib_images, calib_batch=calib_batch,
                         finetune_batch=finetune_batch)
        if not finetune_lr > 0:
            raise ValueError(f"model 'ae' option 'finetune_lr' must be > 0, got {finetune_lr}")
        super().__init__(checkpoint or str(DEFAULT_CHECKPOINT))
        self.valid_images, self.calib_images, self.calib_batch = valid_images, calib_images, calib_batch
        self.finetune_lr, self.finetune_batch = finetune_lr, finetune_batch
        self.test = mnist_tensor("test")

    def load(self) -> nn.Module:
        model, _ = load_autoencoder(self.checkpoint)
        return model

    def problem(self, model: nn.Module, seed: int, latent_prunable: bool) -> PruningProblem:
        valid = _subset(mnist_tensor("valid"), self.valid_images, seed)
        calib = _subset(mnist_tensor("train"), self.calib_images + self.calib_batch, seed).split(self.calib_batch)
        train_batches, heldout = calib[:-1], calib[-1]

        def surrogate(masked: nn.Module, step: int) -> torch.Tensor:
            """Reconstruction MSE on train-split batches; step < 0 asks for the held-out batch."""
            x = heldout if step < 0 else train_batches[step % len(train_batches)]
            return nn.functional.mse_loss(masked(x), x)

        return PruningProblem(
            model=model, components=dict(COMPONENTS), output_layers=output_layers(model),
            example_inputs=valid[:4], latent_prunable=latent_prunable,
            metric=lambda m: psnr(m, valid), surrogate=surrogate,
        )

    def evaluate(self, model: nn.Module, seed: int) -> tuple[float, float]:
        return psnr(model, self.test), 0.0

    def latents(self, model: nn.Module, seed: int) -> torch.Tensor:
        return latents(model, self.test)

    def finetune(self, model: nn.Module, result: PruneResult | None, steps: int, eval_at: list[int],
                 seed: int) -> FineTuned:
        """`steps` Adam steps (fresh optimiser, constant `finetune_lr`) of reconstruction MSE on batches of the
        train split, drawn without replacement per pass in an order fixed by `seed`; test PSNR after each of
        `eval_at`. Masked weights get zero gradients and stay zero."""
        model = copy.deepcopy(model) if result is None else model
        images, gen = mnist_tensor("train"), torch.Generator().manual_seed(seed)
        optimiser = torch.optim.Adam(model.parameters(), lr=self.finetune_lr)
        batches: list[torch.Tensor] = []
        curve, points = [], list(eval_at)
        model.train()
        for step in range(1, steps + 1):
            if not batches:
                batches = list(torch.randperm(len(images), generator=gen).split(self.finetune_batch))
            x = images[batches.pop(0)]
            loss = nn.functional.mse_loss(model(x), x)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if points and step == points[0]:
                curve.append((points.pop(0), self.evaluate(refresh_masked_weights(model).eval(), seed)[0]))
                model.train()
        return FineTuned(refresh_masked_weights(model).eval(), curve)

    def latency_inputs(self) -> dict[str, Any]:
        return {"b1": self.test[:1], "b256": self.test[:256]}

    def extras(self, model: nn.Module, seed: int) -> dict[str, Any]:
        inputs = self.test[:RECON_IMAGES]
        with torch.inference_mode():
            recon = model(inputs)
        as_bytes = lambda t: t.mul(255).round().to(torch.uint8).tolist()  # noqa: E731
        return {"inputs": as_bytes(inputs), "reconstructions": as_bytes(recon)}

    @classmethod
    def figures(cls, folder: ResultsFolder, out: Path) -> list[Path]:
        """`reconstructions.png`: test inputs, the dense reconstruction and each method's at `extras_level`
        (first seed), from the stored cells; nothing when the cells hold none."""
        from benchmarks.report.plots import image_grid

        grids = _stored_reconstructions(folder, cls.extras_level)
        if not grids:
            return []
        title = f"reconstructions: dense and every method at ρ* = {cls.extras_level:g}"
        return [image_grid(grids, IMAGE_SHAPE, title, out / "reconstructions.png")]


def _stored_reconstructions(folder: ResultsFolder, level: float) -> dict[str, list]:
    """{"input": images, "dense": images, series: images...} from the cells that kept reconstructions."""
    from benchmarks.report.tables import series_name
    from benchmarks.sweep.store import DENSE

    grids: dict[str, list] = {}
    for blob in folder.cell_blobs():
        row, extra = blob["row"], blob.get("extra", {})
        recon = extra.get("reconstructions")
        if recon is None or not (row["method"] == DENSE or math.isclose(row["target_sparsity"], level)):
            continue
        grids.setdefault(series_name(row), recon)
        if "inputs" in extra:
            grids.setdefault("input", extra["inputs"])
    if "input" not in grids or DENSE not in grids:
        return {}
    return {"input": grids.pop("input"), DENSE: grids.pop(DENSE), **grids}
