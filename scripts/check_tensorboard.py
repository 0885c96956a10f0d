"""Open a suite's committed TensorBoard records the way a user would and check that they read.

Starts TensorBoard on `results/<suite>/tb` and on `results/<suite>/tb-hparams`, opens the Scalars (smoothing
0), Custom Scalars, Text and HParams tabs in headless Chromium, checks that each shows the suite's data
without any clicking, and saves one screenshot per tab as `docs/img/tb-<tab>.png`.

    python scripts/check_tensorboard.py [results/tdmpc-cartpole-swingup] [--out docs/img]

Needs Chromium and its driver (Debian: `apt-get install chromium chromium-driver`) and selenium
(`pip install '.[browser]'`). Exit code 0 when every tab is populated, 1 when one is not, 2 when a
requirement is missing.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

DEEP_TEXT = """
function walk(node, out) {
  if (node.nodeType === 3) { out.push(node.textContent); return; }
  if (node.nodeType !== 1 && node.nodeType !== 11) return;
  if (node.tagName === 'STYLE' || node.tagName === 'SCRIPT') return;
  if (node.shadowRoot) walk(node.shadowRoot, out);
  if (node.tagName === 'IFRAME') { try { walk(node.contentDocument.body, out); } catch (e) {} }
  for (const child of node.childNodes) walk(child, out);
}
const out = []; walk(document.body, out); return out.join(' ').replace(/\\s+/g, ' ');
"""
"""Visible text of the page, through shadow roots and same-origin frames (TensorBoard's tabs are web components)."""

CHART_COUNT = """
function count(node) {
  let n = (node.tagName === 'CANVAS' || node.tagName === 'svg') ? 1 : 0;
  if (node.shadowRoot) n += count(node.shadowRoot);
  for (const child of node.children || []) n += count(child);
  return n;
}
return count(document.body);
"""
"""Canvases and SVG elements on the page: TensorBoard draws every chart as one of them."""


@dataclass(frozen=True)
class Tab:
    """One tab to open: where, what its text must contain, which file its screenshot goes to."""

    name: str
    url: str
    expected: tuple[str, ...]
    min_charts: int = 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def tensorboard(logdir: Path) -> Iterator[str]:
    """A TensorBoard server on `logdir`; yields its base URL and stops it afterwards."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
                               "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(url: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"TensorBoard exited: {server.stderr.read().decode()[-500:]}")
        try:
            with urllib.request.urlopen(f"{url}/data/runs", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"TensorBoard did not answer at {url} within {timeout:.0f} s")


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1600,1000", "--hide-scrollbars"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or ""
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or ""), options=options)


def _look(driver, tab: Tab, out: Path, timeout: float) -> list[str]:
    """Open `tab`, wait until its text holds every expected string (and enough charts are drawn), save the
    screenshot; returns what is missing (empty when populated)."""
    driver.get(tab.url)
    deadline = time.monotonic() + timeout
    while True:
        text, charts = driver.execute_script(DEEP_TEXT), driver.execute_script(CHART_COUNT)
        missing = [s for s in tab.expected if s not in text]
        if charts < tab.min_charts:
            missing.append(f"{tab.min_charts} charts (found {charts})")
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    time.sleep(2)  # let the last chart finish drawing before the screenshot
    driver.save_screenshot(str(out / f"tb-{tab.name}.png"))
    return missing


def _suite_facts(result_dir: Path) -> tuple[str, str]:
    """(task metric name, a non-dense method) of the suite, read from its metrics.csv."""
    with open(result_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows[0]["metric_name"], next(r["method"] for r in rows if r["method"] != "dense")


def _tabs(scalars_url: str, hparams_url: str, suite: str, metric: str, method: str) -> list[Tab]:
    return [
        Tab("scalars", f"{scalars_url}/#scalars&_smoothingWeight=0", (f"01_{metric}", "dense", method), 6),
        Tab("custom-scalars", f"{scalars_url}/#custom_scalars&_smoothingWeight=0", ("x = target sparsity %", f"{metric}: mean ± std"), 1),
        Tab("text", f"{scalars_url}/#text", ("How to read", "smoothing to 0", f"Suite {suite}")),
        Tab("hparams", f"{hparams_url}/#hparams", (metric, "latent_prunable", "target_sparsity_pct", method)),
    ]


def _missing_requirement() -> str:
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return f"{program} not found: install it (Debian: apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install '.[browser]' (or pip install selenium)"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", type=Path, default=Path("results/tdmpc-cartpole-swingup"),
                        help="a suite's results folder with tb/ and tb-hparams/ (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="screenshot folder (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for each tab (default: %(default)s)")
    ns = parser.parse_args(argv)
    problem = _missing_requirement() or next(
        (f"{ns.dir / sub} not found; rebuild it with: ctrlprune records {ns.dir}"
         for sub in ("tb", "tb-hparams", "metrics.csv") if not (ns.dir / sub).exists()), "")
    if problem:
        print(f"check_tensorboard: {problem}", file=sys.stderr)
        return 2
    ns.out.mkdir(parents=True, exist_ok=True)
    metric, method = _suite_facts(ns.dir)
    failures = 0
    with ExitStack() as stack:
        scalars_url = stack.enter_context(tensorboard(ns.dir / "tb"))
        hparams_url = stack.enter_context(tensorboard(ns.dir / "tb-hparams"))
        driver = _browser()
        stack.callback(driver.quit)
        for tab in _tabs(scalars_url, hparams_url, ns.dir.name, metric, method):
            missing = _look(driver, tab, ns.out, ns.timeout)
            failures += bool(missing)
            status = "populated" if not missing else "EMPTY, missing: " + "; ".join(missing)
            print(f"{tab.name:15s} {status}  ->  {ns.out / f'tb-{tab.name}.png'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
