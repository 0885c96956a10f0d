"""The command line loses nothing and trusts nothing blindly: exact levels, --fresh on a subset, a tampered
checkpoint, torn cells, unwritable outputs and damaged metrics.csv, each ending in one line (exit 2)."""
import contextlib
import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.cli import check_output_file, check_output_folder, main
from benchmarks.sweep.store import ResultStore, read_cell, read_csv, write_atomic

ROOT = Path(__file__).resolve().parents[1]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _refused(argv: list[str], message: str) -> None:
    code, _, err = _run(argv)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))}


@pytest.fixture()
def own_suite(tmp_path: Path) -> Path:
    """A tiny suite on a private copy of the shipped autoencoder, with two levels that agree to 4 decimals."""
    shutil.copy(ROOT / "checkpoints/ae/ae-seed0.pt", tmp_path / "ae.pt")
    suite = tmp_path / "own.toml"
    suite.write_text('name = "own"\nmodel = "ae"\nmethods = ["tp-magnitude"]\nsparsities = [0.3, 0.30000001]\n'
                     f'seeds = [0]\ncheckpoint = "{tmp_path / "ae.pt"}"\n'
                     'model_options = { valid_images = 64, calib_images = 64, calib_batch = 32 }\n')
    return suite


def test_levels_fresh_subsets_tampering_and_torn_cells(tmp_path: Path, own_suite: Path) -> None:
    out = tmp_path / "out"
    cells = out / "own" / "cells"
    assert _run(["bench", "--suite", str(own_suite), "--out", str(out), "--quiet"])[0] == 0
    rows = read_csv(out / "own" / "metrics.csv")
    assert [r["target_sparsity"] for r in rows] == [0.0, 0.3, 0.30000001] and len(list(cells.glob("*.json"))) == 3

    before = _snapshot(cells)
    code, text, _ = _run(["bench", "--suite", str(own_suite), "--out", str(out), "--fresh", "--sparsities", "0.3",
                          "--dry-run"])
    assert code == 0 and "--fresh recomputes the 2 done one(s)" in text and "no other stored cell is touched" in text
    assert _run(["bench", "--suite", str(own_suite), "--out", str(out), "--quiet", "--fresh", "--sparsities", "0.3"])[0] == 0
    after = _snapshot(cells)
    kept = [name for name in before if "0.30000001" in name]
    assert set(after) == set(before) and len(kept) == 1 and after[kept[0]] == before[kept[0]]
    assert len(read_csv(out / "own" / "metrics.csv")) == 3

    data = bytearray((tmp_path / "ae.pt").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(b ^ 0xFF for b in data[len(data) // 2: len(data) // 2 + 64])
    (tmp_path / "ae.pt").write_bytes(bytes(data))
    for extra in ([], ["--fresh"]):
        _refused(["bench", "--suite", str(own_suite), "--out", str(out), "--quiet", *extra], "ae.pt")
        assert _snapshot(cells) == after  # no finished cell is overwritten from a checkpoint that failed its check

    shutil.copy(ROOT / "checkpoints/ae/ae-seed0.pt", tmp_path / "ae.pt")
    torn = next(p for p in cells.glob("*.json") if "0.30000001" in p.name)
    torn.write_text("[]")
    code, text, _ = _run(["bench", "--suite", str(own_suite), "--out", str(out)])
    assert code == 0 and "1 cell file(s) are torn" in text and "1 to run" in text
    assert read_cell(torn) is not None and len(read_csv(out / "own" / "metrics.csv")) == 3


def test_unwritable_outputs_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    _refused(["bench", "--suite", "ae-tiny", "--out", str(tmp_path / "file")], "is a file, not a folder")
    _refused(["bench", "--suite", "ae-tiny", "--out", str(tmp_path / "file" / "below")], "is a file, not a folder")
    (tmp_path / "dir.pt").mkdir()
    _refused(["prune", "--method", "tp-magnitude", "--sparsity", "0.3", "--out", str(tmp_path / "dir.pt")],
             "is a folder, not a file")
    _refused(["prune", "--method", "tp-magnitude", "--sparsity", "0.3", "--seed", "-1", "--out", str(tmp_path / "p.pt")],
             "--seed -1 is outside")
    _refused(["ablate", "--model", "ae", "--widths", "encoder.0:100", "--seed", "-3"], "--seed -3 is outside")
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        _refused(["bench", "--suite", "ae-tiny", "--out", str(tmp_path / "ro")], "Permission denied")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["file", "dir.pt"] + (["ro"] if os.geteuid() else []))


def test_a_full_disk_mid_run_is_one_line_and_leaves_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    _refused(["bench", "--suite", "ae-tiny", "--methods", "tp-magnitude", "--sparsities", "0.2",
              "--out", str(tmp_path), "--quiet"], "No space left on device")
    assert [p.name for p in (tmp_path / "ae-tiny").rglob("*") if p.name != ".lock"] == ["cells"]


def test_a_second_run_on_one_store_is_refused(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "ae-tiny", lambda c: "").lock():
        _refused(["bench", "--suite", "ae-tiny", "--out", str(tmp_path), "--quiet"], "another run (pid")
    assert [p.name for p in (tmp_path / "ae-tiny").iterdir()] == [".lock"]


def test_damaged_metrics_csv_is_one_line_for_table(tmp_path: Path) -> None:
    good = (ROOT / "results/ae/metrics.csv").read_text()
    (tmp_path / "metrics.csv").write_text(good[: len(good) // 2])
    _refused(["table", str(tmp_path)], "is cut short or malformed")


def test_ctrl_c_ends_a_pooled_run_within_seconds(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "benchmarks.cli", "bench", "--suite", "ae", "--methods", "grid", "--sparsities",
           "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", "--seeds", "0,1,2,3,4", "--workers", "2", "--out", str(tmp_path),
           "--quiet"]
    # 45 grid cells of about a second each: the run is still going when the signal arrives, even under load
    # as from a terminal: a job started in the background (`cmd &`, as CI runners may) inherits SIGINT ignored
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    cells = tmp_path / "ae" / "cells"
    deadline = time.time() + 300
    while time.time() < deadline and not list(cells.glob("*.json")):  # the dense cell is done, grid cells run
        time.sleep(0.05)
    started, done_before = time.time(), len(list(cells.glob("*.json")))
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # the run, or a worker holding its stderr, is still going: end them all
        os.killpg(proc.pid, signal.SIGKILL)
        err = proc.communicate(timeout=60)[1] + f"\n(exit {proc.poll()}; it or a worker still ran after 60 s: killed)"
    took, done_after = time.time() - started, len(list(cells.glob("*.json")))
    assert proc.returncode == 130 and "interrupted" in err and took < 10, (
        f"exit {proc.returncode} after {took:.1f} s; cells done {done_before} -> {done_after}; stderr: {err}")
    assert not [p for p in cells.iterdir() if p.name.startswith(".")]


layouts = st.lists(st.sampled_from(["dir", "file", "missing"]), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layouts, st.booleans())
def test_output_paths_are_usable_or_refused_in_one_line_before_any_work(tmp_path: Path, layout: list[str],
                                                                        as_file: bool) -> None:
    """Whatever lies along an --out path (folders, files, nothing), the check either refuses it in one line
    without writing anything, or the path can then be written."""
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    path = base
    for i, kind in enumerate(layout):
        path = path / f"p{i}"
        if kind == "dir" and not path.parent.is_file() and path.parent.exists():
            path.mkdir()
        elif kind == "file" and path.parent.is_dir():
            path.write_text("")
    before = sorted(base.rglob("*"))
    check = check_output_file if as_file else check_output_folder
    try:
        check(path, "--out")
    except (ValueError, OSError) as err:
        assert "\n" not in str(err) and sorted(base.rglob("*")) == before
        return
    if as_file:
        write_atomic(path, "x")
    else:
        write_atomic(path / "ae" / "metrics.csv", "x")
