"""The one safe-checkpoint helper: atomic writes, weights-only reads, kind/version/config checks."""
from pathlib import Path

import pytest
import torch

from agents.checkpoint import (CheckpointError, CheckpointMissing, atomic_save, check_config, load_checkpoint,
                               save_checkpoint, save_sealed)
from agents.tdmpc import load_agent


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle")


def test_round_trip_and_no_temporary_files_left(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "sub" / "x.pt", "thing", {"width": 3}, w=torch.ones(2))
    blob = load_checkpoint(path, "thing")
    assert blob["config"] == {"width": 3} and torch.equal(blob["w"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["x.pt"]


def test_failed_save_keeps_the_old_file(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "x.pt", "thing", {}, n=1)
    with pytest.raises(Exception, match="cannot pickle"):
        atomic_save({"bad": Unpicklable()}, path)
    assert load_checkpoint(path, "thing")["n"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_missing_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CheckpointMissing, match="Create it with: make it") as err:
        load_checkpoint(tmp_path / "none.pt", "thing", hint="make it")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_agent(tmp_path / "agent.pt")


def test_kind_version_and_foreign_files_are_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "x.pt", "thing", {})
    with pytest.raises(CheckpointError, match="not a other checkpoint .*expected 'other'"):
        load_checkpoint(path, "other")
    with pytest.raises(CheckpointError, match="version 1, this code reads version 2"):
        load_checkpoint(path, "thing", version=2)
    atomic_save({"kind": "thing", "version": 1}, path)
    with pytest.raises(CheckpointError, match="not a ctrlprune checkpoint"):
        load_checkpoint(path, "thing")
    atomic_save([1, 2], path)
    with pytest.raises(CheckpointError, match="not a ctrlprune checkpoint"):
        load_checkpoint(path, "thing")
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path, "thing")


def test_namespaced_kind_without_format_key_is_read(tmp_path: Path) -> None:
    """The TD-MPC layout: no "format" key, the kind says ctrlprune."""
    path = save_sealed({"kind": "ctrlprune/x", "version": 3, "w": torch.zeros(1)}, tmp_path / "x.pt")
    assert load_checkpoint(path, "ctrlprune/x", version=3)["version"] == 3


def test_check_config_names_the_differing_fields() -> None:
    check_config("f.pt", {"a": 1, "b": 2, "extra": 0}, {"a": 1, "b": 2})
    with pytest.raises(CheckpointError, match="config differs .*b: file has 2, expected 3"):
        check_config("f.pt", {"a": 1, "b": 2}, {"a": 1, "b": 3})
