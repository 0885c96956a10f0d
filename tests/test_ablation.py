"""Component ablation: a stored solution re-scored with one component at a time restored to full width."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks.ablation import component_variants, parse_widths
from benchmarks.sweep.store import COLUMNS
from pruning import PruningProblem, build_groups

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = "encoder.0:230;encoder.2:113;encoder.4:40;decoder.0:256;decoder.2:306"
"""A solution for the shipped autoencoder (784-512-256-64-256-512-784), latent cut to 40."""


def two_part_problem() -> PruningProblem:
    model = nn.Sequential()
    model.add_module("body", nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6)))
    model.add_module("head", nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)))
    return PruningProblem(model, {"body": "body", "head": "head"}, ["head.2"], example_inputs=torch.randn(4, 4))


def test_variants_restore_one_component_or_the_latent():
    groups = build_groups(two_part_problem())
    widths = parse_widths("body.0:3;body.2:2;head.0:5", groups)
    variants = component_variants(groups, widths)
    assert list(variants) == ["as found", "+body", "+head", "+latent"]
    assert variants["+body"] == {"body.0": 8, "body.2": 2, "head.0": 5}  # the latent body.2 is inter, not body's
    assert variants["+head"] == {"body.0": 3, "body.2": 2, "head.0": 8}
    assert variants["+latent"] == {"body.0": 3, "body.2": 6, "head.0": 5}
    assert list(component_variants(groups, {"body.0": 8, "body.2": 6, "head.0": 5})) == ["as found", "+head"]


def test_widths_text_is_checked():
    groups = build_groups(two_part_problem())
    assert parse_widths("head.0:5", groups) == {"body.0": 8, "body.2": 6, "head.0": 5}
    with pytest.raises(ValueError, match="unknown group 'tail.0'"):
        parse_widths("tail.0:5", groups)
    with pytest.raises(ValueError, match=r"in \[1, 8\]"):
        parse_widths("head.0:9", groups)


def test_ablate_a_stored_autoencoder_cell_through_the_cli(tmp_path):
    row = {column: "" for column in COLUMNS}
    row.update(model="ae", method="gradient", latent_prunable="True", target_sparsity="0.5", seed="0",
               metric_name="psnr", widths=SOLUTION)
    with open(tmp_path / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerow(row)
    env = {**os.environ, "MUJOCO_GL": "egl"}
    cli = [sys.executable, "-m", "benchmarks.cli", "ablate", str(tmp_path)]
    proc = subprocess.run([*cli, "--sparsity", "0.5", "--out", str(tmp_path / "ablation.md")], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "ablation.md").read_text().splitlines()
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in lines[2:]}
    assert list(rows) == ["as found", "+encoder", "+decoder", "+latent"]
    sparsity = {name: float(cells[0]) for name, cells in rows.items()}
    assert sparsity["as found"] > max(sparsity["+encoder"], sparsity["+decoder"], sparsity["+latent"])
    psnr = {name: float(cells[1].split("±")[0]) for name, cells in rows.items()}
    assert psnr["+latent"] > psnr["as found"]  # a 64-wide linear bottleneck cut to 40 loses detail
    wrong = subprocess.run([*cli, "--sparsity", "0.5", "--method", "tp-magnitude"], cwd=ROOT, capture_output=True,
                           text=True, env=env, timeout=600)
    assert wrong.returncode == 2 and "chooses its channels its own way" in wrong.stderr


def test_as_found_scores_only_the_given_widths(tmp_path):
    cli = [sys.executable, "-m", "benchmarks.cli", "ablate", "--model", "ae", "--widths", SOLUTION, "--as-found",
           "--out", str(tmp_path / "widths.md")]
    proc = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "MUJOCO_GL": "egl"},
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = (tmp_path / "widths.md").read_text().splitlines()[2:]
    assert len(rows) == 1 and rows[0].startswith("| as found |")
