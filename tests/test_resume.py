"""An interrupted sweep (kill -9 mid-run) resumes to exactly the rows of a clean run."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.sweep.store import TIMING_COLUMNS, read_csv

ROOT = Path(__file__).resolve().parents[1]


def _bench(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.cli", "bench", "--suite", "ae-tiny", "--out", str(out), "--quiet", *extra]


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: str(v) for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]  # str: nan == nan


def test_kill_and_resume_matches_clean_run(tmp_path) -> None:
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    subprocess.run(_bench(clean, "--workers", "1"), cwd=ROOT, check=True, timeout=600)
    proc = subprocess.Popen(_bench(crashed, "--workers", "1"), cwd=ROOT)
    cells = crashed / "ae-tiny" / "cells"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(cells.glob("*.json"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(cells.glob("*.json")))
    assert 2 <= finished < 5, "the kill should land mid-sweep"
    subprocess.run(_bench(crashed, "--workers", "1"), cwd=ROOT, check=True, timeout=600)
    expected = read_csv(clean / "ae-tiny" / "metrics.csv")
    got = read_csv(crashed / "ae-tiny" / "metrics.csv")
    assert _without_timing(got) == _without_timing(expected) and len(got) == 5
    assert not [p for p in cells.iterdir() if p.name.startswith(".")], "torn temporary files are swept"
