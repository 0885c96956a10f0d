"""TensorBoard records read back with EventAccumulator: scalars, markdown table, hparams."""
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

from benchmarks.records import write_records
from benchmarks.store import Cell

ROWS = [
    {"model": "ae", "method": m, "latent_prunable": True, "target_sparsity": s, "seed": 0, "metric_name": "psnr",
     "metric": 20.0 - 10 * s, "achieved_sparsity": s, "in_band": True, "params": 100, "macs": 100,
     "latent_cosine": 1.0, "latent_cka": 1.0, "rollout_error": float("nan"), "latency_ms_b1": 0.1,
     "latency_ms_b256": 1.0, "search_seconds": 0.5, "evaluations": 3, "widths": ""}
    for m, s in (("dense", 0.0), ("gradient", 0.2), ("gradient", 0.5))
]


def _load(path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_scalars_text_and_hparams_read_back(tmp_path) -> None:
    tb = write_records(tmp_path, ROWS, "ctrlprune bench --suite test")
    psnr = _load(tb / "gradient" / "seed0").Scalars("psnr")
    assert [(e.step, round(e.value, 4)) for e in psnr] == [(20, 18.0), (50, 15.0)]
    text = _load(tb / "summary").Tensors("summary/text_summary")[0]
    markdown = tensor_util.make_ndarray(text.tensor_proto)[0].decode()
    assert "| gradient |" in markdown and "ctrlprune bench --suite test" in markdown
    cell = Cell("ae", "gradient", True, 0.5, 0)
    content = _load(tb / "hparams" / cell.key).PluginTagToContent("hparams")
    info = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert info.hparams["method"].string_value == "gradient"
    assert info.hparams["target_sparsity"].number_value == 0.5


def test_rebuild_replaces_old_records(tmp_path) -> None:
    write_records(tmp_path, ROWS, "x")
    write_records(tmp_path, ROWS[:2], "x")
    assert [e.step for e in _load(tmp_path / "tb" / "gradient" / "seed0").Scalars("psnr")] == [20]
