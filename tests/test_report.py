"""`ctrlprune bench --verbose/--quiet` and `ctrlprune report`: rows as they finish, one page with tables and figures."""
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `examples/` is not an installed package

import examples.pendulum_mlp  # noqa: E402,F401  (registers "pendulum-mlp")
from benchmarks.cli import main  # noqa: E402

SUITE = 'name = "tiny"\nmodel = "pendulum-mlp"\nmethods = ["tp-magnitude", "torch-l2"]\nsparsities = [0.3]\nseeds = [0]\n'


@pytest.fixture
def one_thread():
    """Matrices this small run faster on one thread, the more so on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_verbose_quiet_and_report(tmp_path, capsys, one_thread) -> None:
    toml = tmp_path / "tiny.toml"
    toml.write_text(SUITE)
    assert main(["bench", "--suite", str(toml), "--out", str(tmp_path), "--verbose"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"^(dense|tp-magnitude|torch-l2) rho=\S+ seed=0: model=", line)]
    assert len(rows) == 3 and all("metric=" in r and "achieved_sparsity=" in r for r in rows), out

    assert main(["bench", "--suite", str(toml), "--out", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().out == ""

    result = tmp_path / "tiny"
    assert main(["report", str(result), "--html"]) == 0
    page = (result / "report.md").read_text()
    assert "| tp-magnitude |" in page and "| torch-l2 |" in page and "## return" in page
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert "plots/metric_vs_sparsity.png" in links and all((result / link).is_file() for link in links)
    html = (result / "report.html").read_text()
    assert "<table>" in html and '<img alt="metric_vs_sparsity" src="plots/metric_vs_sparsity.png"' in html
