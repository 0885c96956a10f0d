"""The autoencoder: architecture, PSNR, shipped checkpoint, safe loading."""
import math

import pytest
import torch

from agents.autoencoder import AEConfig, Autoencoder, load_autoencoder, main, output_layers, psnr
from agents.checkpoint import CheckpointError


class Constant(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.value)


def test_psnr_matches_hand_computation() -> None:
    images = torch.tensor([[0.0, 0.5], [1.0, 0.25]])
    # errors against 0.5: 0.5, 0, 0.5, 0.25 -> MSE = (0.25 + 0 + 0.25 + 0.0625) / 4 = 0.140625
    assert psnr(Constant(0.5), images) == pytest.approx(10 * math.log10(1 / 0.140625))


def test_components_and_output_layer() -> None:
    model = Autoencoder(AEConfig(hidden=(32, 16), latent=8))
    assert output_layers(model) == ["decoder.4"]
    assert model.encoder(torch.rand(3, 784)).shape == (3, 8)
    assert "784-32-16-8-16-32-784" in repr(model)


def test_shipped_checkpoint_reconstructs_well() -> None:
    model, meta = load_autoencoder()
    assert meta["test_psnr"] > 22.0
    from agents.autoencoder import mnist_tensor

    assert psnr(model, mnist_tensor("test")[:2000]) > 22.0


def test_corrupt_and_missing_checkpoints_are_refused(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="ctrlprune train ae"):
        load_autoencoder(tmp_path / "nope.pt")
    good = open("checkpoints/ae/ae-seed0.pt", "rb").read()
    (tmp_path / "cut.pt").write_bytes(good[:1000])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_autoencoder(tmp_path / "cut.pt")
    torch.save({"format": "ctrlprune", "kind": "tdmpc", "version": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="expected 'autoencoder'"):
        load_autoencoder(tmp_path / "other.pt")


def test_train_one_epoch_is_seeded(tmp_path) -> None:
    args = ["--epochs", "1", "--hidden", "32", "--latent", "8", "--batch-size", "1024"]
    a, _ = load_autoencoder(main(args + ["--out", str(tmp_path / "a.pt")]))
    b, meta = load_autoencoder(main(args + ["--out", str(tmp_path / "b.pt")]))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert (tmp_path / "tb").is_dir() and meta["epochs"] == 1
