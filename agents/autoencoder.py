"""MLP autoencoder for MNIST, the paper's first use case.

Architecture (default widths): 784 -> 512 -> 256 -> 64 (latent, linear) -> 256 -> 512 -> 784 -> sigmoid,
ReLU between hidden layers. Two named components, `encoder` and `decoder`; the 64-wide bottleneck is the
latent shared by both, so pruning it is an inter-component decision. The reconstruction layer
`decoder.4` is the output layer and is never pruned.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from envs.mnist import load_mnist

KIND = "autoencoder"
COMPONENTS = {"encoder": "encoder", "decoder": "decoder"}
DEFAULT_CHECKPOINT = Path("checkpoints/ae/ae-seed0.pt")


@dataclass
class AEConfig:
    """Widths of the MLP autoencoder."""

    input_dim: int = 784
    """flattened image size"""
    hidden: tuple[int, ...] = (512, 256)
    """hidden widths of the encoder (mirrored by the decoder)"""
    latent: int = 64
    """bottleneck width"""


def _mlp(widths: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return layers


class Autoencoder(nn.Module):
    """MLP autoencoder with components `encoder` (image -> latent) and `decoder` (latent -> image)."""

    def __init__(self, config: AEConfig = AEConfig()) -> None:
        super().__init__()
        self.config = config
        widths = [config.input_dim, *config.hidden, config.latent]
        self.encoder = nn.Sequential(*_mlp(widths))
        self.decoder = nn.Sequential(*_mlp(widths[::-1]), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def __repr__(self) -> str:
        enc = [m.out_features for m in self.encoder if isinstance(m, nn.Linear)]
        dec = [m.out_features for m in self.decoder if isinstance(m, nn.Linear)]
        params = sum(p.numel() for p in self.parameters())
        return f"Autoencoder({self.config.input_dim}-{'-'.join(map(str, enc + dec))}, params={params:,})"


def output_layers(model: Autoencoder) -> list[str]:
    """Qualified names of the layers whose outputs are never pruned (the reconstruction layer)."""
    last = max(i for i, m in enumerate(model.decoder) if isinstance(m, nn.Linear))
    return [f"decoder.{last}"]


def psnr(model: nn.Module, images: torch.Tensor, batch_size: int = 2000) -> float:
    """PSNR in dB (data range 1) of the mean squared reconstruction error over all `images`."""
    with torch.inference_mode():
        sq = sum(((model(x) - x) ** 2).sum().item() for x in images.split(batch_size))
    mse = sq / images.numel()
    return 10.0 * math.log10(1.0 / mse)


def latents(model: Autoencoder, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Encoder outputs for `images`."""
    with torch.inference_mode():
        return torch.cat([model.encoder(x) for x in images.split(batch_size)])


def mnist_tensor(split: str) -> torch.Tensor:
    """One MNIST split as a float32 tensor (N, 784)."""
    return torch.from_numpy(load_mnist()[split].x)


@dataclass
class AETrainArgs:
    """Training of the MNIST autoencoder."""

    seed: int = 0
    """seed of initialisation and batch order"""
    epochs: int = 30
    """passes over the 50,000 training images"""
    batch_size: int = 256
    """images per Adam step"""
    lr: float = 2e-3
    """peak learning rate (cosine decay to 0)"""
    threads: int = 2
    """torch CPU threads"""
    out: Path = DEFAULT_CHECKPOINT
    """checkpoint path; TensorBoard logs go to <out dir>/tb"""
    config: AEConfig = field(default_factory=AEConfig)
    """network widths"""


def train(args: AETrainArgs) -> Path:
    """Train the autoencoder with MSE on the train split, log to TensorBoard, save a checkpoint."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import trange

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train_x, valid_x = mnist_tensor("train"), mnist_tensor("valid")
    model = Autoencoder(args.config)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = math.ceil(len(train_x) / args.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch)
    writer = SummaryWriter(str(Path(args.out).parent / "tb" / Path(args.out).stem))
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in (bar := trange(args.epochs, desc="train ae", unit="epoch", disable=None)):
        model.train()
        for idx in torch.randperm(len(train_x), generator=gen).split(args.batch_size):
            x = train_x[idx]
            loss = nn.functional.mse_loss(model(x), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        valid_psnr = psnr(model, valid_x)
        writer.add_scalar("train/loss", loss.item(), epoch)
        writer.add_scalar("valid/psnr", valid_psnr, epoch)
        bar.set_postfix(loss=f"{loss.item():.4f}", valid_psnr=f"{valid_psnr:.2f}")
        if bar.disable:  # not a terminal: one plain line per epoch for the log
            print(f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.4f}, valid PSNR {valid_psnr:.2f} dB", flush=True)
    seconds = time.perf_counter() - start
    test_psnr = psnr(model, mnist_tensor("test"))
    writer.add_scalar("test/psnr", test_psnr, args.epochs)
    writer.close()
    meta = {"seed": args.seed, "epochs": args.epochs, "valid_psnr": valid_psnr, "test_psnr": test_psnr,
            "train_seconds": seconds, "torch": str(torch.__version__), "threads": args.threads}
    save_checkpoint(args.out, KIND, asdict(args.config), state_dict=model.state_dict(), meta=meta)
    print(f"saved {args.out}: test PSNR {test_psnr:.2f} dB, valid PSNR {valid_psnr:.2f} dB, {seconds:.0f} s")
    return Path(args.out)


def config_from_dict(path: str | Path, stored: object) -> AEConfig:
    """The `AEConfig` a checkpoint's `config` entry describes; CheckpointError (one line) when it is missing,
    has unknown or missing fields, or a width that is not a positive integer."""
    names = [f.name for f in fields(AEConfig)]
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path} lacks its config (the network widths {names})")
    unknown, missing = sorted(set(stored) - set(names), key=str), [n for n in names if n not in stored]
    if unknown or missing:
        raise CheckpointError(f"{path}: config has unknown field(s) {unknown} and lacks {missing}; "
                              f"an autoencoder config holds exactly {names}")
    hidden = stored["hidden"]
    widths = [stored["input_dim"], stored["latent"], *(hidden if isinstance(hidden, (list, tuple)) else [hidden])]
    if not isinstance(hidden, (list, tuple)) or not all(type(w) is int and w > 0 for w in widths):
        raise CheckpointError(f"{path}: config widths must be positive integers (hidden a list of them), "
                              f"got {stored!r}")
    return AEConfig(input_dim=stored["input_dim"], hidden=tuple(hidden), latent=stored["latent"])


def load_autoencoder(path: str | Path = DEFAULT_CHECKPOINT) -> tuple[Autoencoder, dict]:
    """Load a trained autoencoder and its training metadata (safe, weights-only, digest checked)."""
    blob = load_checkpoint(path, KIND, hint="ctrlprune train ae")
    model = Autoencoder(config_from_dict(path, blob.get("config")))
    state = blob.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} lacks its weights (state_dict)")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    stored = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()}
    if stored != expected:
        wrong = sorted(set(expected) ^ set(stored), key=str) or [k for k in expected if stored[k] != expected[k]]
        raise CheckpointError(f"{path}: weights do not fit {model!r} (differing: {wrong[:4]})")
    model.load_state_dict(state)
    meta = blob.get("meta", {})
    return model.eval(), meta if isinstance(meta, dict) else {}


def main(argv: list[str] | None = None) -> Path:
    """`ctrlprune train ae`: parse flags into `AETrainArgs` and train."""
    defaults = AETrainArgs()
    parser = argparse.ArgumentParser(prog="ctrlprune train ae", description=train.__doc__)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of init and batch order")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over the training images")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads")
    parser.add_argument("--latent", type=int, default=AEConfig.latent, help="bottleneck width")
    parser.add_argument("--hidden", type=int, nargs="+", default=list(AEConfig.hidden), help="encoder hidden widths")
    parser.add_argument("--out", type=Path, default=defaults.out, help="checkpoint path")
    ns = parser.parse_args(argv)
    if ns.epochs < 1 or ns.batch_size < 1 or ns.lr <= 0 or ns.latent < 1 or min(ns.hidden) < 1:
        parser.error("--epochs, --batch-size, --latent and --hidden must be positive, --lr > 0")
    config = AEConfig(hidden=tuple(ns.hidden), latent=ns.latent)
    return train(AETrainArgs(ns.seed, ns.epochs, ns.batch_size, ns.lr, ns.threads, ns.out, config))


if __name__ == "__main__":
    main()
