"""Pruned models saved without pickled code load back to the same function; damaged or mismatched files are refused."""
import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from agents.checkpoint import save_checkpoint
from benchmarks.cli import main
from benchmarks.pruned import load_pruned, save_pruned
from benchmarks.usecases import get_usecase
from pruning import PruneResult, get_method

DENSE = Path("checkpoints/ae/ae-seed0.pt")


@pytest.fixture(scope="module")
def usecase():
    return get_usecase("ae", valid_images=256, calib_images=256)


@pytest.fixture(scope="module")
def dense(usecase) -> torch.nn.Module:
    return usecase.load()


def _prune(usecase, dense, method: str, target: float) -> PruneResult:
    return get_method(method)(usecase.problem(dense, 0, True), target, eps=0.01, seed=0)


@pytest.mark.parametrize("method", ["tp-magnitude", "torch-l2"])
def test_round_trip_computes_the_same_function(tmp_path, usecase, dense, method) -> None:
    result = _prune(usecase, dense, method, 0.4)
    path = save_pruned(tmp_path / "p.pt", usecase, result, seed=0, latent_prunable=True, eps=0.01)
    loaded = load_pruned(path)
    x = usecase.test[:64]
    with torch.no_grad():
        assert torch.equal(loaded.model(x), result.model.eval()(x))
    assert loaded.params == result.params and abs(loaded.sparsity - result.achieved) < 1e-12
    masks = [k for k in loaded.model.state_dict() if k.endswith("weight_mask")]
    assert bool(masks) == (method == "torch-l2")  # masks come back as masks, physical pruning as smaller layers
    if method == "tp-magnitude":
        assert loaded.model.encoder[0].weight.shape[0] < dense.encoder[0].weight.shape[0]


def test_cli_prune_then_eval(tmp_path, capsys) -> None:
    out = tmp_path / "pruned.pt"
    assert main(["prune", "--model", "ae", "--method", "tp-random", "--sparsity", "0.3", "--seed", "1",
                 "--keep-latent", "--out", str(out)]) == 0
    assert main(["eval", str(out)]) == 0
    text = capsys.readouterr().out
    assert "method: tp-random" in text and "latent prunable: False" in text
    assert "psnr: " in text and "params: " in text and "encoder.4:64" in text  # the kept latent stays whole
    sparsity = float(text.split("sparsity: ")[1].split()[0])
    assert abs(sparsity - 0.3) <= 0.01


def _refused(capsys, path: Path, message: str) -> None:
    assert main(["eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_damaged_or_mismatched_files_are_refused(tmp_path, capsys, usecase, dense) -> None:
    dense_copy = tmp_path / "dense.pt"
    shutil.copy(DENSE, dense_copy)
    own = get_usecase("ae", str(dense_copy), valid_images=256, calib_images=256)
    result = _prune(own, dense, "tp-magnitude", 0.3)
    good = save_pruned(tmp_path / "good.pt", own, result, seed=0, latent_prunable=True, eps=0.01)
    blob = good.read_bytes()

    (tmp_path / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    _refused(capsys, tmp_path / "truncated.pt", "not a readable ctrlprune checkpoint")
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    _refused(capsys, tmp_path / "flipped.pt", "flipped.pt")
    _refused(capsys, DENSE, "expected 'pruned'")

    other = _prune(own, dense, "tp-magnitude", 0.5)
    wrong = save_pruned(tmp_path / "wrong.pt", own, dataclasses.replace(result, history=other.history),
                        seed=0, latent_prunable=True, eps=0.01)
    _refused(capsys, wrong, "does not match the stored weights")

    retrained = dense.state_dict()
    retrained["encoder.0.bias"] = retrained["encoder.0.bias"] + 1e-3
    save_checkpoint(dense_copy, "autoencoder", {"input_dim": 784, "hidden": (512, 256), "latent": 64},
                    state_dict=retrained)
    _refused(capsys, good, "another version of")
    dense_copy.unlink()
    _refused(capsys, good, "does not exist")


def test_tdmpc_round_trip_with_two_latent_producers(tmp_path) -> None:
    """The TD-MPC latent is produced by the encoder and the dynamics: history replay and masks both come back."""
    from agents.tdmpc.model import trace_forward

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tdmpc = get_usecase("tdmpc-cartpole-swingup", calib_episodes=1)
        dense = tdmpc.load()
        problem = tdmpc.problem(dense, 0, True)
        for method in ("tp-magnitude", "torch-l2"):
            result = get_method(method)(problem, 0.3, eps=0.01, seed=0)
            path = save_pruned(tmp_path / f"{method}.pt", tdmpc, result, seed=0, latent_prunable=True, eps=0.01)
            loaded = load_pruned(path, calib_episodes=1)
            with torch.no_grad():
                want, got = trace_forward(result.model.eval(), problem.example_inputs), trace_forward(loaded.model, problem.example_inputs)
            assert all(torch.equal(a, b) for a, b in zip(want, got)) and loaded.params == result.params
    finally:
        torch.set_num_threads(threads)


def _hand_made(tmp_path: Path, good: Path, name: str, change) -> Path:
    """A copy of `good` changed by `change(blob)`, with both digests recomputed (as a forger would)."""
    from agents.checkpoint import DIGEST_KEY, atomic_save, content_digest, read_blob
    from benchmarks.pruned import _digest

    blob = read_blob(good)
    change(blob)
    try:
        blob["digest"] = _digest(blob["config"], blob["history"], blob["state_dict"])
    except (AttributeError, TypeError, ValueError):
        pass  # what cannot be digested is refused before the digest is compared
    blob[DIGEST_KEY] = content_digest(blob)
    return atomic_save(blob, tmp_path / name)


def test_hand_made_files_with_recomputed_digests_are_refused_in_one_line(tmp_path, capsys, usecase, dense) -> None:
    result = _prune(usecase, dense, "tp-magnitude", 0.3)
    good = save_pruned(tmp_path / "good.pt", usecase, result, seed=0, latent_prunable=True, eps=0.01)
    first = next(iter(result.model.state_dict()))
    cases = {
        "values.pt": (lambda b: b["state_dict"].__setitem__(first, [1.0, 2.0]), "must map names to tensors"),
        "history.pt": (lambda b: b["history"].append(["encoder.0", "yes", [1]]), "history entries must be"),
        "indices.pt": (lambda b: b["history"].append(["encoder.0", True, [-3]]), "history entries must be"),
        "label.pt": (lambda b: b["config"]["widths"].__setitem__("encoder.99", 3), "layers the model does not have"),
        "width.pt": (lambda b: b["config"]["widths"].__setitem__("encoder.0", "wide"), "widths must map"),
    }
    for name, (change, message) in cases.items():
        _refused(capsys, _hand_made(tmp_path, good, name, change), message)
