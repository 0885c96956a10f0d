"""TensorBoard records of a suite, rebuilt from its rows: scalars, a markdown table and hparams.

Layout under `results/<suite>/tb/`:
- `<method>[-keeplatent]/seed<S>/`: scalars against the target sparsity in percent (the step axis):
  the task metric, achieved sparsity, params, MACs, latencies, latent stability, search time;
- `summary/`: the summary table as markdown (`add_text`);
- `hparams/<cell>/`: one hparams run per cell (method, latent, target, seed -> metrics).
Open with `tensorboard --logdir results/<suite>/tb`.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from benchmarks.report import suite_summary
from benchmarks.store import Cell

SCALARS = ("metric", "achieved_sparsity", "params", "macs", "latent_cosine", "latent_cka", "rollout_error",
           "latency_ms_b1", "latency_ms_b256", "search_seconds", "evaluations", "cell_seconds")


def _run_name(row: dict[str, Any]) -> str:
    return row["method"] + ("" if row["latent_prunable"] else "-keeplatent") + f"/seed{row['seed']}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value


def write_records(result_dir: Path, rows: list[dict[str, Any]], command: str) -> Path:
    """Replace `result_dir/tb` with event files describing `rows`."""
    tb = result_dir / "tb"
    shutil.rmtree(tb, ignore_errors=True)
    writers: dict[str, SummaryWriter] = {}
    for row in rows:
        name = _run_name(row)
        writer = writers.setdefault(name, SummaryWriter(str(tb / name)))
        step = round(100 * row["target_sparsity"])
        for key in SCALARS:
            if _finite(row.get(key)):
                tag = row["metric_name"] if key == "metric" else key
                writer.add_scalar(tag, row[key], step)
        _write_hparams(tb, row)
    for writer in writers.values():
        writer.close()
    with SummaryWriter(str(tb / "summary")) as writer:
        writer.add_text("summary", suite_summary(result_dir, rows, f"Suite {result_dir.name}", command), 0)
    return tb


def _write_hparams(tb: Path, row: dict[str, Any]) -> None:
    cell = Cell(row["model"], row["method"], row["latent_prunable"], row["target_sparsity"], row["seed"])
    hparams = {"method": row["method"], "latent_prunable": row["latent_prunable"],
               "target_sparsity": row["target_sparsity"], "seed": row["seed"]}
    metrics = {f"hparam/{k}": float(row[k]) for k in ("metric", "achieved_sparsity", "latent_cka", "search_seconds")
               if _finite(row.get(k))}
    with SummaryWriter(str(tb / "hparams" / cell.key)) as writer:
        writer.add_hparams(hparams, metrics, run_name=".")
