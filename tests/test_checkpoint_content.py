"""Dense checkpoints are checked, not trusted: content digests, finite weights, one-line refusals."""
import os
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.autoencoder import AEConfig, Autoencoder, load_autoencoder
from agents.checkpoint import (DIGEST_KEY, ORIGIN_KEY, CheckpointError, add_digest, atomic_save,
                               checkpoint_identity, content_digest, file_sha256, load_checkpoint, main,
                               save_checkpoint)
from agents.tdmpc import TDMPC, load_agent, preset, save_agent
from envs import mnist

SHIPPED = [Path("checkpoints/ae/ae-seed0.pt"), *sorted(Path("checkpoints/tdmpc").glob("*/*.pt"))]


def flip_tensor_bytes(path: Path, tensor: torch.Tensor, count: int = 64) -> None:
    """Invert `count` bytes of `tensor`'s stored data inside the checkpoint file at `path`."""
    data = bytearray(path.read_bytes())
    start = data.find(tensor.contiguous().numpy().tobytes())
    assert start >= 0
    data[start:start + count] = bytes(b ^ 0xFF for b in data[start:start + count])
    path.write_bytes(bytes(data))


def small_ae_blob(model: Autoencoder) -> dict:
    return {"config": {"input_dim": 784, "hidden": (16,), "latent": 4}, "state_dict": model.state_dict()}


def test_flipped_bytes_in_a_dense_checkpoint_are_refused(tmp_path: Path) -> None:
    weights = torch.arange(256, dtype=torch.float32)
    path = save_checkpoint(tmp_path / "x.pt", "thing", {}, w=weights)
    assert load_checkpoint(path, "thing")[DIGEST_KEY] == content_digest(load_checkpoint(path, "thing"))
    flip_tensor_bytes(path, weights)
    with pytest.raises(CheckpointError, match="changed after it was written"):
        load_checkpoint(path, "thing")


def test_flipped_bytes_in_the_autoencoder_checkpoint_are_refused(tmp_path: Path) -> None:
    model = Autoencoder(AEConfig(hidden=(16,), latent=4))
    path = save_checkpoint(tmp_path / "ae.pt", "autoencoder", small_ae_blob(model)["config"],
                           state_dict=model.state_dict())
    load_autoencoder(path)
    flip_tensor_bytes(path, model.encoder[0].weight.detach())
    with pytest.raises(CheckpointError, match="changed after it was written"):
        load_autoencoder(path)


def test_flipped_bytes_in_a_tdmpc_agent_are_refused(tmp_path: Path) -> None:
    agent, path = TDMPC(preset("tiny"), 5, 1), tmp_path / "agent.pt"
    save_agent(path, agent, "cartpole-swingup")
    load_agent(path)
    flip_tensor_bytes(path, agent.model.encoder[0].weight.detach())
    with pytest.raises(CheckpointError, match="changed after it was written"):
        load_agent(path)


def test_non_finite_weights_are_refused_on_write_and_on_read(tmp_path: Path) -> None:
    bad = torch.tensor([1.0, float("nan"), float("inf")])
    with pytest.raises(CheckpointError, match=r"non-finite .* in w"):
        save_checkpoint(tmp_path / "x.pt", "thing", {}, w=bad)
    assert not list(tmp_path.iterdir())
    blob = {"format": "ctrlprune", "kind": "thing", "version": 1, "state": {"layer.weight": bad}}
    atomic_save({**blob, DIGEST_KEY: content_digest(blob)}, tmp_path / "sealed.pt")  # digest recomputed
    with pytest.raises(CheckpointError, match=r"non-finite .* state\.layer\.weight"):
        load_checkpoint(tmp_path / "sealed.pt", "thing")


def test_files_without_a_digest_are_refused_with_the_command_that_adds_one(tmp_path: Path) -> None:
    path = atomic_save({"format": "ctrlprune", "kind": "thing", "version": 1, "w": torch.ones(2)}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=f"no content digest .*python -m agents.checkpoint {path}"):
        load_checkpoint(path, "thing")
    assert main([str(path)]) == 0
    assert torch.equal(load_checkpoint(path, "thing")["w"], torch.ones(2))


def test_code_executing_pickles_are_refused_in_one_line(tmp_path: Path) -> None:
    class RunsCode:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    torch.save({"format": "ctrlprune", "kind": "thing", "version": 1, "x": RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "evil.pt", "thing")
    message = str(err.value)
    assert "refused" in message and "\n" not in message and "weights_only=False" not in message
    assert not (tmp_path / "ran").exists()


def test_a_directory_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "d.pt").mkdir()
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path / "d.pt", "thing")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_autoencoder(tmp_path / "d.pt")


@pytest.mark.parametrize("config, match", [
    (None, "lacks its config"),
    ({"input_dim": 784, "hidden": (16,), "latent": 4, "dropout": 0.1}, r"unknown field\(s\) \['dropout'\]"),
    ({"input_dim": 784, "hidden": (16,)}, r"lacks \['latent'\]"),
    ({"input_dim": 784, "hidden": "16", "latent": 4}, "positive integers"),
    ({"input_dim": 784, "hidden": (16,), "latent": -4}, "positive integers"),
    ({"input_dim": 784, "hidden": (16,), "latent": 8}, "weights do not fit"),
])
def test_autoencoder_config_and_weights_are_checked_in_one_line(tmp_path: Path, config, match: str) -> None:
    model = Autoencoder(AEConfig(hidden=(16,), latent=4))
    blob = {"format": "ctrlprune", "kind": "autoencoder", "version": 1, "state_dict": model.state_dict()}
    if config is not None:
        blob["config"] = config
    atomic_save({**blob, DIGEST_KEY: content_digest(blob)}, tmp_path / "ae.pt")
    with pytest.raises(CheckpointError, match=match) as err:
        load_autoencoder(tmp_path / "ae.pt")
    assert "\n" not in str(err.value)


def test_autoencoder_without_weights_is_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ae.pt", "autoencoder", {"input_dim": 784, "hidden": (16,), "latent": 4})
    with pytest.raises(CheckpointError, match="lacks its weights"):
        load_autoencoder(tmp_path / "ae.pt")


def test_adding_a_digest_keeps_every_tensor_and_the_identity(tmp_path: Path) -> None:
    blob = {"format": "ctrlprune", "kind": "thing", "version": 1, "config": {"w": (2, 3)},
            "state": {"a": torch.randn(3, 4), "b": torch.arange(5)}, "meta": {"note": "x", "n": 1.5}}
    path = atomic_save(blob, tmp_path / "old.pt")
    old_sha = file_sha256(path)
    assert checkpoint_identity(path) == old_sha
    assert main([str(path)]) == 0
    again = load_checkpoint(path, "thing")
    assert again[ORIGIN_KEY] == old_sha and checkpoint_identity(path) == old_sha != file_sha256(path)
    assert all(torch.equal(again["state"][k], blob["state"][k]) for k in blob["state"])
    assert again["config"] == blob["config"] and again["meta"] == blob["meta"]
    assert add_digest(path) is False
    assert [p.name for p in tmp_path.iterdir()] == ["old.pt"]


def test_shipped_checkpoints_carry_their_digest_and_the_identity_their_results_were_made_with() -> None:
    assert len(SHIPPED) == 17
    for path in SHIPPED:
        blob = load_checkpoint(path, torch.load(path, weights_only=True)["kind"], version=1)  # digest, finite
        assert len(blob[ORIGIN_KEY]) == 64 and checkpoint_identity(path) == blob[ORIGIN_KEY] != file_sha256(path)


def test_mnist_cache_path_that_is_a_directory_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(mnist.CACHE_ENV, str(tmp_path))
    (tmp_path / "mnist.pkl.gz").mkdir()
    with pytest.raises(mnist.MNISTUnavailable, match="is a directory"):
        mnist.ensure_data()
    with pytest.raises(mnist.MNISTUnavailable, match="cannot read"):
        mnist.read_data_file(tmp_path / "mnist.pkl.gz")
    shutil.rmtree(tmp_path / "mnist.pkl.gz")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(mnist.CACHE_ENV, str(tmp_path / "file"))
    with pytest.raises(mnist.MNISTUnavailable, match="is a file"):
        mnist.ensure_data()


tensors = st.builds(
    lambda shape, dtype, seed: (torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 4).to(dtype),
    st.lists(st.integers(0, 3), max_size=3), st.sampled_from([torch.float32, torch.float64, torch.bfloat16,
                                                              torch.int64, torch.uint8, torch.bool]),
    st.integers(0, 2**31))
leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                   st.text(max_size=8), tensors)
blobs = st.dictionaries(st.text(min_size=1, max_size=6),
                        st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                                     | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8),
                        max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=blobs)
def test_digest_survives_the_round_trip_and_sees_every_change(tmp_path: Path, blob: dict) -> None:
    header = {"format": "ctrlprune", "kind": "thing", "version": 1}
    path = save_checkpoint(tmp_path / "x.pt", "thing", {}, payload=blob)
    again = load_checkpoint(path, "thing")
    assert content_digest(again) == content_digest({**header, "config": {}, "payload": blob})
    changed = {**blob, "extra": 0}
    assert content_digest({**header, "payload": changed}) != content_digest({**header, "payload": blob})
    for key, value in blob.items():
        if isinstance(value, torch.Tensor) and value.numel():
            flipped = value.clone()
            flipped.view(-1)[0] = 0 if bool(value.view(-1)[0] != 0) else 1
            assert content_digest({**blob, key: flipped}) != content_digest(blob)
