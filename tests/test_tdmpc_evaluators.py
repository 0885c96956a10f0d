"""The lock-step vs committed comparison: its table joins cells by identity, and each suite keeps its section."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmarks.tdmpc_evaluators import TITLE, compare, replace_section, seed_spread, summary

FIELDS = ["model", "metric_name", "method", "latent_prunable", "target_sparsity", "seed", "metric", "metric_std",
          "widths"]


def _csv(path: Path, rows: list[tuple]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        writer.writerows(("tdmpc-cartpole-swingup", "return", *row) for row in rows)
    return path


def test_the_comparison_joins_cells_and_scales_differences_by_both_spreads(tmp_path):
    old = _csv(tmp_path / "old.csv", [("gradient", True, 0.5, 0, 800.0, 10.0, "a:1"),
                                      ("gradient", True, 0.5, 1, 820.0, 10.0, "a:1"),
                                      ("grid", False, 0.2, 0, 700.0, 5.0, "a:1")])
    new = _csv(tmp_path / "new.csv", [("gradient", True, 0.5, 0, 810.0, 9.0, "a:2"),
                                      ("tp-random", True, 0.5, 0, 1.0, 1.0, "a:1")])
    joined, table = compare(old, new, episodes=2, spread=seed_spread(old))
    assert [j["key"] for j in joined] == [("gradient", True, 0.5, 0)]
    assert joined[0]["diff"] == pytest.approx(10.0)
    assert joined[0]["z"] == pytest.approx(1.0)  # sqrt(2 / 2) * 10
    assert joined[0]["seed_std"] == pytest.approx(10.0)  # 800 and 820
    assert "| gradient | prunable | 0.5 | 0 | 800.0 | 810.0 | +10.0 |" in table and table.endswith("| **other** |\n")
    assert summary(joined).startswith("1 of 1 cells within |z| <= 2; 1 of 1 with a known seed spread within twice it")


def test_each_suite_replaces_only_its_own_section():
    first = replace_section("", "tdmpc-quick", "## tdmpc-quick\n\nold quick\n")
    both = replace_section(first, "tdmpc-cartpole-swingup", "## tdmpc-cartpole-swingup\n\ncartpole\n")
    updated = replace_section(both, "tdmpc-quick", "## tdmpc-quick\n\nnew quick\n")
    assert updated.startswith(TITLE + "\n")
    assert "new quick" in updated and "old quick" not in updated and "cartpole" in updated
    assert updated.index("tdmpc-quick") < updated.index("tdmpc-cartpole-swingup")
