"""TensorBoard records of a suite, rebuilt from its rows: scalars, a chart layout, markdown tables and hparams.

Layout (each run written by one writer, then closed):
- `results/<suite>/tb/<method>[-keeplatent]/`: one run per method and latent setting, so each method keeps one
  colour. The step axis is the target sparsity in percent. Tags `NN_<column>/mean` (mean over seeds),
  `NN_<column>/seed<S>` (one seed) and, for the task metric, `01_<metric>/mean-std` and `01_<metric>/mean+std`;
  the task metric is `01_` so it sorts first. The `dense` run draws its metric across the suite's levels as a
  reference line; its other columns sit at 0 %.
- `results/<suite>/tb/summary/`: the summary tables and a reading guide as markdown (Text tab) and a
  `custom_scalars` layout (Custom Scalars tab): margin charts of the metric, mean ± std over seeds.
- `results/<suite>/tb-hparams/`: one hparams session per cell (method, latent setting, target sparsity %,
  seed -> the task metric and other columns), kept apart so the scalar runs stay few.
Open with `tensorboard --logdir results/<suite>/tb` (and `--logdir results/<suite>/tb-hparams` for HParams);
set smoothing to 0.
"""
from __future__ import annotations

import shutil
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from google.protobuf.struct_pb2 import ListValue, Value
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams.api_pb2 import DataType, Experiment, HParamInfo, MetricInfo, MetricName, Status
from tensorboard.plugins.hparams.metadata import (EXPERIMENT_TAG, PLUGIN_DATA_VERSION, PLUGIN_NAME,
                                                  SESSION_END_INFO_TAG, SESSION_START_INFO_TAG)
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo, SessionStartInfo
from torch.utils.tensorboard import SummaryWriter

from benchmarks.report.summary import suite_summary
from benchmarks.report.tables import METHOD_ORDER
from benchmarks.sweep.store import Cell

COLUMNS = ("metric", "achieved_sparsity", "latent_cka", "latent_cosine", "rollout_error", "params", "macs",
           "latency_ms_b1", "latency_ms_b256", "search_seconds", "evaluations", "cell_seconds")
"""metrics.csv columns drawn as scalars, in chart order; `metric` is named for the task (psnr, return)."""

HPARAM_COLUMNS = ("achieved_sparsity", "latent_cka", "search_seconds")
"""Columns shown beside the task metric in the HParams table."""

SUMMARY_RUN = "summary"
X_AXIS = "x = target sparsity %"
READING_GUIDE = f"""**How to read these records.** The horizontal axis of every chart is the **target sparsity in percent**
(TensorBoard labels it "Step"). Set **smoothing to 0** (Scalars settings): the default smoothing bends curves
drawn against sparsity. Each run is one method and latent setting (`-keeplatent`: the latent width was kept);
`NN_<column>/mean` is the mean over seeds, `NN_<column>/seed<S>` one seed, and the task metric comes first
(`01_`) with `mean-std` / `mean+std` bands; the Custom Scalars tab draws it as mean ± std margin charts. The
`dense` run draws the unpruned model's metric across all levels as a reference. HParams: open the sibling
folder `tb-hparams` (one session per cell)."""


def run_name(method: str, latent_prunable: bool) -> str:
    """The run of a method and latent setting, e.g. `gradient` or `gradient-keeplatent`."""
    return method + ("" if latent_prunable or method == "dense" else "-keeplatent")


def tag(column: str, metric_name: str) -> str:
    """The tag group of a column, numbered in chart order: `01_psnr`, `02_achieved_sparsity`, ..."""
    index = COLUMNS.index(column) + 1
    return f"{index:02d}_{metric_name if column == 'metric' else column}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _step(target_sparsity: float) -> int:
    return round(100 * target_sparsity)


def _runs(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by run, runs in METHOD_ORDER (then plugins in first-seen order), latent-prunable first."""
    grouped: dict[tuple[int, bool, str], list[dict[str, Any]]] = defaultdict(list)
    extra: dict[str, int] = {}
    for row in rows:
        method = row["method"]
        rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER) + extra.setdefault(method, len(extra))
        grouped[(rank, not row["latent_prunable"], run_name(method, row["latent_prunable"]))].append(row)
    return {key[2]: grouped[key] for key in sorted(grouped)}


def _by_level(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    levels: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        levels[_step(row["target_sparsity"])].append(row)
    return dict(sorted(levels.items()))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def _write_run(writer: SummaryWriter, rows: list[dict[str, Any]], reference_steps: list[int] | None) -> None:
    """Scalars of one run: per column the mean over seeds and each seed; bands for the metric. With
    `reference_steps` (the dense run) the metric is also drawn at those steps."""
    metric_name = rows[0]["metric_name"]
    for step, level_rows in _by_level(rows).items():
        for column in COLUMNS:
            values = [(r["seed"], r[column]) for r in level_rows if _finite(r.get(column))]
            if not values:
                continue
            group = tag(column, metric_name)
            steps = reference_steps if column == "metric" and reference_steps else [step]
            mean, std = _mean_std([v for _, v in values])
            for at in steps:
                writer.add_scalar(f"{group}/mean", mean, at)
                if column == "metric":
                    writer.add_scalar(f"{group}/mean-std", mean - std, at)
                    writer.add_scalar(f"{group}/mean+std", mean + std, at)
                for seed, value in sorted(values):
                    writer.add_scalar(f"{group}/seed{seed}", value, at)


def chart_layout(metric_name: str) -> dict[str, dict[str, list]]:
    """The Custom Scalars layout: the metric as a margin chart (mean ± std over seeds), then the means of the
    other columns; every chart's x axis is the target sparsity %."""
    metric = tag("metric", metric_name)
    return {
        f"1. {metric_name} vs sparsity ({X_AXIS})": {
            f"{metric_name}: mean ± std over seeds ({X_AXIS})":
                ["Margin", [f"{metric}/mean", f"{metric}/mean-std", f"{metric}/mean+std"]],
        },
        f"2. other columns, mean over seeds ({X_AXIS})": {
            f"{tag(c, metric_name)} ({X_AXIS})": ["Multiline", [f"^{tag(c, metric_name)}/mean$"]]
            for c in COLUMNS[1:]
        },
    }


def _plugin_summary(tag_name: str, data: HParamsPluginData) -> Summary:
    data.version = PLUGIN_DATA_VERSION
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME,
                                                                     content=data.SerializeToString()))
    return Summary(value=[Summary.Value(tag=tag_name, metadata=metadata)])


def _hparam_value(value: bool | int | str) -> Value:
    """A typed hparam value (torch's `add_hparams` stores bools as numbers, so it is not used here)."""
    if isinstance(value, bool):
        return Value(bool_value=value)
    if isinstance(value, str):
        return Value(string_value=value)
    return Value(number_value=value)


def _data_type(value: bool | int | str) -> int:
    if isinstance(value, bool):
        return DataType.DATA_TYPE_BOOL
    return DataType.DATA_TYPE_STRING if isinstance(value, str) else DataType.DATA_TYPE_FLOAT64


def _cell_hparams(row: dict[str, Any]) -> dict[str, bool | int | str]:
    return {"method": str(row["method"]), "latent_prunable": bool(row["latent_prunable"]),
            "target_sparsity_pct": _step(row["target_sparsity"]), "seed": str(row["seed"])}


def _hparam_metrics(row: dict[str, Any]) -> dict[str, float]:
    columns = {row["metric_name"]: row.get("metric"), **{c: row.get(c) for c in HPARAM_COLUMNS}}
    return {name: float(value) for name, value in columns.items() if _finite(value)}


def _domain_order(value: bool | int | str) -> tuple[int, Any]:
    """Numbers and digit strings (seeds) in numeric order, other strings alphabetically."""
    if isinstance(value, str):
        return (0, int(value)) if value.isdigit() else (1, value)
    return (0, value)


def _experiment(rows: list[dict[str, Any]]) -> Summary:
    """The experiment summary: typed hparams with their discrete domains, then the metric columns (the task
    metric first, named for the task)."""
    values: dict[str, set] = defaultdict(set)
    for row in rows:
        for name, value in _cell_hparams(row).items():
            values[name].add(value)
    infos = [HParamInfo(name=name, type=_data_type(next(iter(domain))),
                        domain_discrete=ListValue(values=[_hparam_value(v) for v in sorted(domain, key=_domain_order)]))
             for name, domain in values.items()]
    metrics = [MetricInfo(name=MetricName(tag=name)) for name in (rows[0]["metric_name"], *HPARAM_COLUMNS)]
    return _plugin_summary(EXPERIMENT_TAG, HParamsPluginData(experiment=Experiment(hparam_infos=infos,
                                                                                   metric_infos=metrics)))


def _write_session(writer: SummaryWriter, row: dict[str, Any]) -> None:
    """One cell as an hparams session: typed hparams, then its metrics as scalars at its sparsity %."""
    start = SessionStartInfo(hparams={k: _hparam_value(v) for k, v in _cell_hparams(row).items()})
    writer.file_writer.add_summary(_plugin_summary(SESSION_START_INFO_TAG, HParamsPluginData(session_start_info=start)))
    for name, value in _hparam_metrics(row).items():
        writer.add_scalar(name, value, _step(row["target_sparsity"]))
    end = SessionEndInfo(status=Status.STATUS_SUCCESS)
    writer.file_writer.add_summary(_plugin_summary(SESSION_END_INFO_TAG, HParamsPluginData(session_end_info=end)))


def write_hparams(hparams_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Replace `hparams_dir` with one hparams session per row (run = the cell's key) and the experiment."""
    shutil.rmtree(hparams_dir, ignore_errors=True)
    if not rows:
        return hparams_dir
    with SummaryWriter(str(hparams_dir)) as writer:
        writer.file_writer.add_summary(_experiment(rows))
    for row in rows:
        cell = Cell(row["model"], row["method"], row["latent_prunable"], row["target_sparsity"], row["seed"])
        with SummaryWriter(str(hparams_dir / cell.key)) as writer:
            _write_session(writer, row)
    return hparams_dir


def write_records(result_dir: Path, rows: list[dict[str, Any]], command: str) -> Path:
    """Replace `result_dir/tb` (scalars, layout, text) and `result_dir/tb-hparams` with records of `rows`;
    returns the `tb` folder."""
    tb = result_dir / "tb"
    shutil.rmtree(tb, ignore_errors=True)
    try:
        _write_all(tb, result_dir, rows, command)
    except OSError:  # e.g. a full disk: leave no half-written (0-byte) event files behind
        shutil.rmtree(tb, ignore_errors=True)
        raise
    return tb


def _write_all(tb: Path, result_dir: Path, rows: list[dict[str, Any]], command: str) -> None:
    levels = sorted({_step(r["target_sparsity"]) for r in rows})
    for name, run_rows in _runs(rows).items():
        with SummaryWriter(str(tb / name)) as writer:
            _write_run(writer, run_rows, levels if name == "dense" else None)
    with SummaryWriter(str(tb / SUMMARY_RUN)) as writer:
        writer.add_text("00_how_to_read", READING_GUIDE, 0)
        writer.add_text("summary", suite_summary(result_dir, rows, f"Suite {result_dir.name}", command), 0)
        if rows:
            writer.add_custom_scalars(chart_layout(rows[0]["metric_name"]))
    write_hparams(result_dir / "tb-hparams", rows)
