"""TensorBoard records read back with EventAccumulator: one run per method, tag order, bands, layout, text,
typed hparams in the sibling folder."""
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.util import tensor_util

from benchmarks.records import write_records
from benchmarks.sweep.store import Cell


def _row(method: str, sparsity: float, seed: int, latent: bool = True) -> dict:
    return {"model": "ae", "method": method, "latent_prunable": latent, "target_sparsity": sparsity, "seed": seed,
            "metric_name": "psnr", "metric": 20.0 - 10 * sparsity + seed, "achieved_sparsity": sparsity,
            "in_band": True, "params": 100, "macs": 100, "latent_cosine": 1.0, "latent_cka": 1.0,
            "rollout_error": float("nan"), "latency_ms_b1": 0.1, "latency_ms_b256": 1.0, "search_seconds": 0.5,
            "evaluations": 3, "widths": ""}


ROWS = [_row("dense", 0.0, s) for s in (0, 1)] + [
    _row(m, lv, s, latent) for m in ("gradient", "grid") for latent in (True, False)
    for lv in (0.2, 0.5) for s in (0, 1)]


def _load(path: Path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _points(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, round(e.value, 4)) for e in acc.Scalars(tag)]


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    result_dir = tmp_path_factory.mktemp("suite")
    write_records(result_dir, ROWS, "ctrlprune bench --suite test")
    return result_dir


def test_one_run_per_method_and_latent_setting_one_event_file_each(records: Path) -> None:
    runs = sorted(p.name for p in (records / "tb").iterdir())
    assert runs == ["dense", "gradient", "gradient-keeplatent", "grid", "grid-keeplatent", "summary"]
    for run in runs:
        assert len(list((records / "tb" / run).glob("events.out.tfevents.*"))) == 1


def test_metric_first_with_seeds_mean_and_band_against_sparsity_percent(records: Path) -> None:
    acc = _load(records / "tb" / "gradient")
    tags = sorted(acc.Tags()["scalars"])
    assert tags[0].startswith("01_psnr/")
    assert _points(acc, "01_psnr/seed0") == [(20, 18.0), (50, 15.0)]
    assert _points(acc, "01_psnr/seed1") == [(20, 19.0), (50, 16.0)]
    assert _points(acc, "01_psnr/mean") == [(20, 18.5), (50, 15.5)]
    assert _points(acc, "01_psnr/mean-std") == [(20, 18.0), (50, 15.0)]
    assert _points(acc, "01_psnr/mean+std") == [(20, 19.0), (50, 16.0)]
    assert _points(acc, "02_achieved_sparsity/mean") == [(20, 0.2), (50, 0.5)]
    assert not any(t.startswith("05_rollout_error") for t in tags)  # NaN column: no points


def test_dense_reference_line_spans_the_levels(records: Path) -> None:
    acc = _load(records / "tb" / "dense")
    assert _points(acc, "01_psnr/mean") == [(0, 20.5), (20, 20.5), (50, 20.5)]
    assert [s for s, _ in _points(acc, "02_achieved_sparsity/mean")] == [0]


def test_summary_text_guide_and_margin_layout(records: Path) -> None:
    acc = _load(records / "tb" / "summary")
    text = acc.Tensors("summary/text_summary")[0]
    markdown = tensor_util.make_ndarray(text.tensor_proto)[0].decode()
    assert "| gradient |" in markdown and "ctrlprune bench --suite test" in markdown
    guide = tensor_util.make_ndarray(acc.Tensors("00_how_to_read/text_summary")[0].tensor_proto)[0].decode()
    assert "sparsity in percent" in guide and "smoothing to 0" in guide
    layout = layout_pb2.Layout.FromString(
        tensor_util.make_ndarray(acc.Tensors("custom_scalars__config__")[0].tensor_proto).item())
    first = layout.category[0]
    assert "sparsity %" in first.title
    margin = first.chart[0].margin.series[0]
    assert (margin.value, margin.lower, margin.upper) == ("01_psnr/mean", "01_psnr/mean-std", "01_psnr/mean+std")


def _plugin_data(acc: EventAccumulator, tag: str) -> plugin_data_pb2.HParamsPluginData:
    return plugin_data_pb2.HParamsPluginData.FromString(acc.PluginTagToContent("hparams")[tag])


def test_hparams_sit_apart_typed_and_named_for_the_task(records: Path) -> None:
    hparams_dir = records / "tb-hparams"
    experiment = _plugin_data(_load(hparams_dir), "_hparams_/experiment").experiment
    types = {h.name: h.type for h in experiment.hparam_infos}
    assert types == {"method": api_pb2.DATA_TYPE_STRING, "latent_prunable": api_pb2.DATA_TYPE_BOOL,
                     "target_sparsity_pct": api_pb2.DATA_TYPE_FLOAT64, "seed": api_pb2.DATA_TYPE_STRING}
    assert experiment.metric_infos[0].name.tag == "psnr"
    session = _load(hparams_dir / Cell("ae", "grid", False, 0.5, 1).key)
    start = _plugin_data(session, "_hparams_/session_start_info").session_start_info
    assert start.hparams["latent_prunable"].bool_value is False and start.hparams["latent_prunable"].WhichOneof("kind") == "bool_value"
    assert start.hparams["method"].string_value == "grid"
    assert start.hparams["seed"].string_value == "1" and start.hparams["target_sparsity_pct"].number_value == 50
    assert _points(session, "psnr") == [(50, 16.0)]
    assert not (records / "tb" / "hparams").exists()


def test_rebuild_replaces_old_records(tmp_path: Path) -> None:
    write_records(tmp_path, ROWS, "x")
    write_records(tmp_path, ROWS[:4], "x")
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["dense", "gradient", "summary"]
    assert [s for s, _ in _points(_load(tmp_path / "tb" / "gradient"), "01_psnr/mean")] == [20]
    assert len(list((tmp_path / "tb-hparams").iterdir())) == 5  # the experiment file and four sessions


def test_browser_check_refuses_a_folder_without_records(tmp_path: Path) -> None:
    script = Path(__file__).parents[1] / "scripts" / "check_tensorboard.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path), "--out", str(tmp_path / "img")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "check_tensorboard:" in done.stderr
    assert not (tmp_path / "img").exists()
