"""Rank check of the TD-MPC surrogates: variants of committed solutions, scored by every scorer and by the return."""
from __future__ import annotations

import csv
import math
import random

import pytest

from benchmarks import surrogate_rank
from benchmarks.ablation import WidthModels
from benchmarks.surrogate_rank import (Scorers, Variant, bootstrap_interval, distinct, exchange_variants, exchange_widths,
                                      spearman)
from benchmarks.sweep.store import COLUMNS
from benchmarks.usecases import get_usecase
from benchmarks.usecases.tdmpc.surrogate import SurrogateWeights

SOLUTIONS = {
    (True, 0.4): "encoder.0:40;encoder.2:12;reward.0:30;pi.0:33;q1.3:40",
    (True, 0.5): "encoder.0:32;encoder.2:10;reward.0:20;pi.0:24;q1.3:30;dynamics.2:50",
    (True, 0.6): "encoder.0:20;encoder.2:8;reward.0:13;pi.0:16;q1.3:20;dynamics.2:40",
    (False, 0.4): "encoder.0:40;reward.0:24;pi.0:30;q1.3:40;q2.3:40",
    (False, 0.5): "encoder.0:30;reward.0:20;pi.0:20;q1.3:30;q2.3:30;dynamics.2:48",
    (False, 0.6): "encoder.0:20;reward.0:13;pi.0:13;q1.3:20;q2.3:20;dynamics.2:36",
}
"""Kept widths of a tiny agent's stand-in gradient cells (their sparsities need not meet the levels)."""


def write_cells(folder, solutions=SOLUTIONS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        for (prunable, level), widths in solutions.items():
            row = {column: "" for column in COLUMNS}
            row.update(model="tdmpc-cartpole-swingup", method="gradient", latent_prunable=str(prunable),
                       target_sparsity=str(level), seed="0", metric_name="return", widths=widths)
            writer.writerow(row)


def test_exchanges_move_width_and_keep_the_parameter_count(tiny_agent_path):
    usecase = get_usecase("tdmpc-cartpole-swingup", str(tiny_agent_path), calib_episodes=1, states=8, candidates=4)
    built = WidthModels(usecase, 0, True, "magnitude")
    full = {g.label: g.width for g in built.groups}
    solution = {**full, "encoder.0": 32, "reward.0": 20, "pi.0": 24, "q1.3": 30}
    rng, budget = random.Random(0), built.params.hard_params(solution)
    for _ in range(20):
        for prunable in (True, False):
            widths = exchange_widths(solution, built.groups, built.params, rng, 2, prunable)
            assert built.params.hard_params(widths) <= budget
            assert all(1 <= widths[k] <= full[k] for k in full)
            if not prunable:
                assert widths["encoder.2"] == full["encoder.2"]
    moved = [exchange_widths(solution, built.groups, built.params, rng, 1, True) for _ in range(10)]
    assert any(widths != solution for widths in moved)
    whole = Variant("dense", "committed", full, True)  # nothing to grow: no exchange, and no endless search
    assert exchange_variants([whole], built.groups, built.params, 2, 0) == []


def test_variants_with_the_same_widths_are_scored_once():
    first, same, other = (Variant(name, "committed", widths, prunable) for name, widths, prunable in
                          (("a", {"x": 1}, True), ("b", {"x": 1}, False), ("c", {"x": 2}, True)))
    assert distinct([first, same, other]) == [first, other] and first.name == "a (= b)"


def test_spearman_of_the_negated_score_and_its_bootstrap_interval():
    variants = [Variant(str(i), "exchange", {"x": i}, True, returns=(float(r), 1.0), scores={"s": float(sc)})
                for i, (r, sc) in enumerate([(900, 0.1), (800, 0.2), (700, 0.3), (600, 0.5), (100, 9.0)])]
    assert spearman(variants, "s") == pytest.approx(1.0)
    variants[0].scores["s"], variants[1].scores["s"] = 0.2, 0.1  # the two best swapped
    assert spearman(variants, "s") == pytest.approx(0.9)
    low, high = bootstrap_interval(variants, "s")
    assert -1.0 <= low < 0.9 and high == pytest.approx(1.0)
    assert math.isnan(spearman(variants[:2], "s"))


def test_rank_check_scores_every_variant_and_reuses_returns(tiny_agent_path, tmp_path):
    write_cells(tmp_path / "cells")
    argv = ["--task", "cartpole-swingup", "--checkpoint", str(tiny_agent_path), "--results", str(tmp_path / "cells"),
            "--episodes", "1", "--exchanges", "1", "--out", str(tmp_path / "rank")]
    assert surrogate_rank.main(argv) == 0
    with open(tmp_path / "rank" / "cartpole-swingup.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    origins = [row["origin"] for row in rows]
    assert origins[:6] == ["committed"] * 6 and origins.count("exchange") == 2 and "ablate" in origins
    assert all(math.isfinite(float(row[name])) for row in rows for name in Scorers.names)
    weights = SurrogateWeights()
    for row in rows:  # the terms add up to the surrogate with its weights
        terms = {term: float(row[f"term: {term}"]) for term in Scorers.terms}
        total = terms["value"] + sum(getattr(weights, term) * terms[term] for term in Scorers.terms if term != "value")
        assert total == pytest.approx(float(row["surrogate, 8 batches"]), rel=1e-3, abs=1e-6)
    committed = {(row["latent_prunable"] == "True", row["widths"]) for row in rows[:6]}
    assert len(committed) == 6
    report = (tmp_path / "rank.md").read_text()
    assert report.startswith(surrogate_rank.TITLE) and "| planner_regret |" in report
    assert "python -m benchmarks.surrogate_rank --task cartpole-swingup" in report

    stored = {row["widths"]: row["return"] for row in rows}
    rows[0]["return"] = "12345.0"  # a return and scores already measured are reused, not measured again
    rows[0]["planner_regret"] = "7.5"
    rows[1]["soft_regret"] = ""  # a scorer missing from the earlier run is computed
    with open(tmp_path / "rank" / "cartpole-swingup.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert surrogate_rank.main(argv) == 0
    with open(tmp_path / "rank" / "cartpole-swingup.csv", newline="") as fh:
        again = list(csv.DictReader(fh))
    assert again[0]["return"] == "12345.0000" and again[0]["planner_regret"] == "7.5"
    assert again[1]["soft_regret"] and math.isfinite(float(again[1]["soft_regret"]))
    assert [row["return"] for row in again[1:]] == [f"{float(stored[row['widths']]):.4f}" for row in again[1:]]


def test_missing_cells_are_one_line_and_nothing_is_written(tiny_agent_path, tmp_path, capsys):
    write_cells(tmp_path / "cells", {key: value for key, value in SOLUTIONS.items() if key != (False, 0.5)})
    argv = ["--task", "cartpole-swingup", "--checkpoint", str(tiny_agent_path), "--results", str(tmp_path / "cells"),
            "--out", str(tmp_path / "rank")]
    assert surrogate_rank.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no gradient cell at sparsity 0.5" in err and "latent kept" in err
    assert not (tmp_path / "rank").exists() and not (tmp_path / "rank.md").exists()
    assert surrogate_rank.main([*argv[:6], "--results", str(tmp_path / "nowhere")]) == 2


def test_a_bug_inside_the_check_shows_its_traceback(tiny_agent_path, tmp_path, monkeypatch):
    write_cells(tmp_path / "cells", SOLUTIONS)
    argv = ["--task", "cartpole-swingup", "--checkpoint", str(tiny_agent_path), "--results", str(tmp_path / "cells"),
            "--out", str(tmp_path / "rank")]

    def broken(*args, **kwargs):
        return int("not a number")  # a ValueError that no check of the input raised

    monkeypatch.setattr(surrogate_rank, "committed_solutions", broken)
    with pytest.raises(ValueError, match="invalid literal"):
        surrogate_rank.main(argv)
