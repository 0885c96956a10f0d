"""The results store: one JSON file per finished cell, written atomically, and `metrics.csv` rebuilt from them.

A cell is one (model, method, latent setting, target sparsity, seed). Each finished cell lands in
`results/<suite>/cells/<key>.json` through a temporary file and `os.replace`, so a crash (even `kill -9`)
leaves either the whole row or none. Rerunning a suite computes only the cells whose file is missing or
was made under different settings (its fingerprint differs), and `metrics.csv` always lists exactly the
suite's finished cells in suite order: none lost, none duplicated.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

DENSE = "dense"
"""The method name of the unpruned reference rows."""

COLUMNS = [
    "model", "method", "latent_prunable", "target_sparsity", "achieved_sparsity", "in_band", "seed",
    "metric_name", "metric", "metric_std", "params", "macs", "latent_cosine", "latent_cka", "rollout_error",
    "latency_ms_b1", "latency_ms_b256", "search_seconds", "evaluations", "widths", "cell_seconds",
]
"""Columns of metrics.csv, in order. `metric_std` is the spread over evaluation episodes (TD-MPC);
`cell_seconds` is the wall time of the whole cell (search, evaluation, measurements), empty for cells stored
before it was recorded."""

TIMING_COLUMNS = ("latency_ms_b1", "latency_ms_b256", "search_seconds", "cell_seconds")
"""Columns that depend on the machine's load, left out of determinism checks."""


@dataclass(frozen=True)
class Cell:
    """One unit of work of a sweep."""

    model: str
    method: str
    latent_prunable: bool
    target_sparsity: float
    seed: int

    @property
    def key(self) -> str:
        latent = "latent" if self.latent_prunable else "keeplatent"
        return f"{self.model}__{self.method}__{latent}__{self.target_sparsity:.4f}__seed{self.seed}"

    def __str__(self) -> str:
        return f"{self.method} rho={self.target_sparsity:g} seed={self.seed}" + ("" if self.latent_prunable else " (latent kept)")


def fingerprint(settings: dict[str, Any]) -> str:
    """Short stable hash of the settings that decide a cell's result."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


class ResultsFolder:
    """The read side of one suite's results folder: its metrics.csv rows, cell files and run.json. Every
    reader of results goes through it, so only this module knows the folder's layout."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"
        self.csv_path = self.root / "metrics.csv"
        self.run_path = self.root / "run.json"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root}, {len(list(self.cells_dir.glob('*.json')))} cell files)"

    def rows(self) -> list[dict[str, Any]]:
        """The typed rows of metrics.csv; FileNotFoundError naming the command that makes them when absent."""
        if not self.csv_path.is_file():
            raise FileNotFoundError(f"no metrics.csv in {self.root}; run `ctrlprune bench --suite {self.root.name}` first")
        return read_csv(self.csv_path)

    def cell_files(self) -> Iterator[tuple[Path, dict[str, Any] | None]]:
        """Every cell file in name order with its content (None when unreadable)."""
        for path in sorted(self.cells_dir.glob("*.json")):
            try:
                yield path, json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                yield path, None

    def cell_blobs(self) -> Iterator[dict[str, Any]]:
        """The content of every readable cell file ({"row", "extra", "fingerprint", "context"}), in name order."""
        return (blob for _, blob in self.cell_files() if blob is not None)

    def run_info(self) -> dict[str, Any]:
        """run.json of the last run (the suite as run, its command, the machine); {} when there is none."""
        return json.loads(self.run_path.read_text()) if self.run_path.is_file() else {}


class ResultStore(ResultsFolder):
    """Finished cells of one suite under `root` (= results/<suite>): the write side, keyed by cell."""

    def __init__(self, root: str | Path, fingerprint: Callable[[Cell], str], context: str = "") -> None:
        super().__init__(root)
        self.fingerprint = fingerprint
        """settings hash of a cell; a stored cell with another hash is stale"""
        self.context = context
        """hash of the settings every cell of the suite shares (model, checkpoint, eps, model options)"""

    def path(self, cell: Cell) -> Path:
        return self.cells_dir / f"{cell.key}.json"

    def get(self, cell: Cell) -> dict[str, Any] | None:
        """The stored row of `cell`, or None when missing, unreadable or made under other settings."""
        try:
            blob = json.loads(self.path(cell).read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if blob.get("fingerprint") != self.fingerprint(cell):
            return None
        return blob["row"]

    def put(self, cell: Cell, row: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """Store a finished cell atomically."""
        blob = {"fingerprint": self.fingerprint(cell), "context": self.context, "row": row, "extra": extra or {}}
        write_atomic(self.path(cell), json.dumps(blob, indent=1, sort_keys=True, default=float))

    def extra(self, cell: Cell) -> dict[str, Any]:
        """Side data stored with a cell (e.g. reconstructions), empty when none."""
        try:
            return json.loads(self.path(cell).read_text()).get("extra", {})
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def sweep_temporaries(self) -> None:
        """Delete temporary files a killed run left behind (never finished rows)."""
        for tmp in self.cells_dir.glob(".*"):
            tmp.unlink(missing_ok=True)

    def missing(self, cells: Iterable[Cell]) -> list[Cell]:
        return [c for c in cells if self.get(c) is None]

    def finished_rows(self, cells: Iterable[Cell]) -> list[dict[str, Any]]:
        """Rows of the finished cells, in the order given."""
        return [row for c in cells if (row := self.get(c)) is not None]

    def other_rows(self, cells: Iterable[Cell]) -> list[dict[str, Any]]:
        """Rows of stored cells outside `cells` (earlier runs of other subsets of the suite) made under the
        same shared settings (files from before contexts were recorded count as the same) and still current
        (their fingerprint matches: e.g. not made by an older version of their method), in a stable order."""
        asked = {self.path(c).name for c in cells}
        rows = []
        for path, blob in self.cell_files():
            if path.name not in asked and blob is not None and self._current(blob):
                rows.append(blob["row"])
        return sorted(rows, key=lambda r: (r["method"], not r["latent_prunable"], r["target_sparsity"], r["seed"]))

    def _current(self, blob: dict[str, Any]) -> bool:
        """Made under this suite's shared settings (files from before contexts were recorded count as such)
        and this cell's current fingerprint."""
        if blob.get("context", self.context) != self.context:
            return False
        row = blob["row"]
        cell = Cell(row["model"], row["method"], row["latent_prunable"], row["target_sparsity"], row["seed"])
        return blob.get("fingerprint") == self.fingerprint(cell)

    def stale(self) -> int:
        """How many stored cells were made under other settings or code versions (rerunning recomputes them)."""
        return sum(blob is None or not self._current(blob) for _, blob in self.cell_files())

    def write_csv(self, cells: Iterable[Cell]) -> Path:
        """Rebuild metrics.csv atomically: the finished `cells`, then the other stored cells of the suite."""
        cells = list(cells)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(format_row(r) for r in self.finished_rows(cells) + self.other_rows(cells))
        write_atomic(self.csv_path, buf.getvalue())
        return self.csv_path

    def write_run_info(self, info: dict[str, Any]) -> None:
        """Replace run.json with `info`."""
        write_atomic(self.run_path, json.dumps(info, indent=1))

    def clear(self) -> None:
        """Forget every result of this suite (`--fresh`)."""
        if self.root.exists():
            shutil.rmtree(self.root)


def format_row(row: dict[str, Any]) -> dict[str, Any]:
    """Round floats for the CSV so reruns give byte-identical files."""
    out = {}
    for key in COLUMNS:
        value = row.get(key, "")
        if isinstance(value, float) and key not in ("target_sparsity",):
            value = f"{value:.6g}"
        out[key] = value
    return out


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """metrics.csv as typed rows."""
    with open(path, newline="") as fh:
        return [_typed(r) for r in csv.DictReader(fh)]


_INT_COLUMNS = {"seed", "params", "macs", "evaluations"}
_BOOL_COLUMNS = {"in_band", "latent_prunable"}
_STR_COLUMNS = {"model", "method", "metric_name", "widths"}


def _typed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in _STR_COLUMNS:
            out[key] = value
        elif key in _BOOL_COLUMNS:
            out[key] = value == "True"
        elif value == "":
            out[key] = float("nan")
        elif key in _INT_COLUMNS:
            out[key] = int(float(value))
        else:
            out[key] = float(value)
    return out
