"""The worked example examples/prune_your_own_model.py runs end to end (tiny training and search budgets)."""
from __future__ import annotations

import torch

from examples.prune_your_own_model import HORIZON, LATENT, LinearSystem, main, run


def test_the_example_prunes_its_world_model_into_runnable_block_respecting_models(capsys):
    results = main(["--target", "0.3", "--train-steps", "30", "--budget", "4", "--gradient-steps", "10"])
    printed = capsys.readouterr().out
    assert "| dynamics.3 | 32 | 8 | inter |" in printed and "in band" in printed
    batch = LinearSystem(seed=5).batch(7)
    for method, result in results.items():
        assert result.widths["dynamics.3"] % 8 == 0 and result.widths["dynamics.3"] <= LATENT
        rewards, values = run(result.model, batch)
        assert rewards.shape == (7, HORIZON) and values.shape == (7, HORIZON, 3)
        assert torch.isfinite(values).all()
    assert results["grid"].in_band and results["gradient"].in_band
