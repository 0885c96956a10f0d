"""The `ctrlprune` command run as a subprocess: a tiny suite end to end, and bad input."""
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.sweep.store import COLUMNS, read_csv

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "benchmarks.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": "egl"}
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


def test_tiny_suite_end_to_end(tmp_path) -> None:
    proc = run("bench", "--suite", "ae-tiny", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "ae-tiny"
    rows = read_csv(out / "metrics.csv")
    assert list(rows[0]) == COLUMNS
    assert [(r["method"], r["target_sparsity"]) for r in rows] == [
        ("dense", 0.0), ("tp-magnitude", 0.2), ("tp-magnitude", 0.5), ("torch-l2", 0.2), ("torch-l2", 0.5)]
    assert all(abs(r["achieved_sparsity"] - r["target_sparsity"]) <= 0.01 for r in rows)
    assert all(0 < r["cell_seconds"] < 600 for r in rows)
    assert rows[0]["metric"] > rows[2]["metric"]  # pruning half the model costs PSNR
    assert {p.name for p in (out / "plots").iterdir()} >= {"metric_vs_sparsity.png", "reconstructions.png"}
    assert (out / "summary.md").read_text().count("| tp-magnitude |") >= 1 and (out / "tb" / "summary").is_dir()
    assert "TensorBoard: tensorboard --logdir" in proc.stdout
    before = (out / "metrics.csv").read_bytes()
    again = run("bench", "--suite", "ae-tiny", "--out", str(tmp_path), "--quiet")
    assert again.returncode == 0 and (out / "metrics.csv").read_bytes() == before  # resumed: nothing recomputed


def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path) -> None:
    cases = [
        (["--sparsities", "0.2,1.5"], "outside [0, 1)"),
        (["--methods", "magic"], "valid methods"),
        (["--suite", "nope"], "shipped suites"),
    ]
    for args, message in cases:
        proc = run("bench", "--suite", "ae-tiny", "--out", str(tmp_path), *args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    suite = tmp_path / "missing.toml"
    suite.write_text('name = "m"\nmodel = "ae"\nmethods = ["tp-magnitude"]\ncheckpoint = "nowhere.pt"\n')
    proc = run("bench", "--suite", str(suite), "--out", str(tmp_path))
    assert proc.returncode == 2 and "ctrlprune train ae" in proc.stderr
    assert list(tmp_path.iterdir()) == [suite]


def test_list_and_groups() -> None:
    proc = run("list")
    assert proc.returncode == 0 and "gradient" in proc.stdout and "ae" in proc.stdout
    proc = run("groups", "--model", "ae")
    assert proc.returncode == 0 and "inter" in proc.stdout and "encoder" in proc.stdout


def test_a_task_without_shipped_agent_names_its_train_command() -> None:
    proc = run("groups", "--model", "tdmpc-finger-spin")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "ctrlprune train tdmpc --task finger-spin" in proc.stderr
    proc = run("groups", "--model", "tdmpc-nope")
    assert proc.returncode == 2 and "unknown task 'nope'" in proc.stderr and "walker-walk" in proc.stderr


def test_tiny_tdmpc_training_through_the_cli(tmp_path) -> None:
    proc = run("train", "tdmpc", "--task", "cartpole-swingup", "--seed", "3", "--steps", "1000", "--preset", "tiny",
               "--out", str(tmp_path), "--eval-freq", "1000", "--eval-episodes", "1", "--save-freq", "500",
               "--threads", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "eval.csv").read_text().splitlines()[0] == "seed,step,return"
    assert (tmp_path / "eval.csv").read_text().splitlines()[1].startswith("3,1000,")
    assert (tmp_path / "agent.pt").is_file() and any((tmp_path / "tb").iterdir())
    bad = run("train", "tdmpc", "--task", "cartpole-swingupp", "--steps", "100", "--out", str(tmp_path / "bad"))
    assert bad.returncode != 0 and "cartpole-swingup" in bad.stderr
