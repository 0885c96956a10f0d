"""The results store: one JSON file per finished cell, written atomically, and `metrics.csv` rebuilt from them.

A cell is one (model, method, latent setting, target sparsity, seed). Each finished cell lands in
`results/<suite>/cells/<key>.json` through a temporary file and `os.replace`, so a crash (even `kill -9`)
leaves either the whole row or none. Rerunning a suite computes only the cells whose file is missing or
was made under different settings (its fingerprint differs), and `metrics.csv` always lists exactly the
suite's finished cells in suite order: none lost, none duplicated.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from agents.checkpoint import replace_atomically

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

FINETUNE_COLUMNS = ["finetune_steps", "metric_before", "finetune_curve", "finetune_seconds"]
"""Columns metrics.csv adds after `COLUMNS` when a suite fine-tunes (some row has `finetune_steps` > 0): the
steps, the metric before fine-tuning (`metric` is the one after), the recovery curve as "step:metric;..." and
the wall time of the fine-tuning alone (its evaluations included)."""

LOCK_FILE = ".lock"
"""Lock file of a store (`<root>/.lock`), held by the run writing to it."""


class StoreError(ValueError):
    """The store cannot be used as asked (another run holds it, metrics.csv is damaged); one line says why."""


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
    finetune_steps: int = 0
    """Fine-tuning steps after pruning (0: the pruned model is scored as it is)."""

    @property
    def key(self) -> str:
        latent = "latent" if self.latent_prunable else "keeplatent"
        finetune = f"__ft{self.finetune_steps}" if self.finetune_steps else ""
        return f"{self.model}__{self.method}__{latent}__{level_key(self.target_sparsity)}__seed{self.seed}{finetune}"

    def matches(self, row: dict[str, Any]) -> bool:
        """Whether a stored row is this cell's (same model, method, latent setting, exact level, seed and
        fine-tuning steps; rows without the last field were not fine-tuned)."""
        return (row.get("model"), row.get("method"), row.get("latent_prunable"), row.get("target_sparsity"),
                row.get("seed"), row.get("finetune_steps", 0)) == (
                    self.model, self.method, self.latent_prunable, self.target_sparsity, self.seed, self.finetune_steps)

    def __str__(self) -> str:
        return (f"{self.method} rho={self.target_sparsity:g} seed={self.seed}" + ("" if self.latent_prunable else " (latent kept)")
                + (f" finetuned {self.finetune_steps}" if self.finetune_steps else ""))


def level_key(level: float) -> str:
    """The sparsity level in a cell's file name, exact: 4 decimals for a level that has at most 4 (the
    names of the stored cells), else its shortest round-trip form (which never has exactly 4 decimals), so
    distinct levels never share a file."""
    return f"{level:.4f}" if round(level, 4) == level else repr(float(level))


def fingerprint(settings: dict[str, Any]) -> str:
    """Short stable hash of the settings that decide a cell's result."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) in one step (`agents.checkpoint.replace_atomically`)."""
    replace_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


_ROW_TYPES: dict[str, type | tuple[type, ...]] = {
    "model": str, "method": str, "latent_prunable": bool, "target_sparsity": float, "seed": int,
    "metric_name": str, "metric": (int, float),
}
"""Row fields every stored cell must hold, with their JSON types."""


def read_cell(path: Path) -> dict[str, Any] | None:
    """A cell file's content when it is a whole cell (a row with its identity and metric; a cell without a
    fingerprint is never current), else None (missing, cut short, not JSON, or another shape)."""
    try:
        blob = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(blob, dict) or not isinstance(blob.get("fingerprint", ""), str):
        return None
    row = blob.get("row")
    if not isinstance(row, dict):
        return None
    for key, kind in _ROW_TYPES.items():
        value = row.get(key)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            return None
    return blob


def row_cell(row: dict[str, Any]) -> Cell:
    """The cell a stored row belongs to."""
    return Cell(row["model"], row["method"], row["latent_prunable"], row["target_sparsity"], row["seed"],
                row.get("finetune_steps", 0))


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
        """Every cell file in name order with its content (None when torn: not a whole cell, see `read_cell`)."""
        for path in sorted(self.cells_dir.glob("*.json")):
            yield path, read_cell(path)

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
        """The stored row of `cell`, or None when missing, torn, another cell's, or made under other settings."""
        blob = read_cell(self.path(cell))
        if blob is None or not cell.matches(blob["row"]) or blob.get("fingerprint") != self.fingerprint(cell):
            return None
        return blob["row"]

    def put(self, cell: Cell, row: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """Store a finished cell atomically."""
        blob = {"fingerprint": self.fingerprint(cell), "context": self.context, "row": row, "extra": extra or {}}
        write_atomic(self.path(cell), json.dumps(blob, indent=1, sort_keys=True, default=float))

    def extra(self, cell: Cell) -> dict[str, Any]:
        """Side data stored with a cell (e.g. reconstructions), empty when none."""
        blob = read_cell(self.path(cell))
        extra = blob.get("extra") if blob is not None else None
        return extra if isinstance(extra, dict) else {}

    def sweep_temporaries(self) -> None:
        """Delete temporary files a killed run left behind (never finished rows); call it holding `lock()`."""
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
        rows = [blob["row"] for path, blob in self.cell_files()
                if path.name not in asked and blob is not None and self._current(path, blob)]
        return sorted(rows, key=lambda r: (r["method"], not r["latent_prunable"], r["target_sparsity"], r["seed"],
                                           r.get("finetune_steps", 0)))

    def _current(self, path: Path, blob: dict[str, Any]) -> bool:
        """Made under this suite's shared settings and fingerprint, and filed under its own cell's name."""
        cell = row_cell(blob["row"])
        return (blob.get("context", self.context) == self.context and self.path(cell).name == path.name
                and blob.get("fingerprint") == self.fingerprint(cell))

    def stale(self) -> int:
        """How many stored cells were made under other settings or code versions (rerunning recomputes them)."""
        return sum(blob is not None and not self._current(path, blob) for path, blob in self.cell_files())

    def torn(self) -> list[Path]:
        """Cell files that are not a whole cell (cut short, hand-edited, not JSON); a run recomputes them."""
        return [path for path, blob in self.cell_files() if blob is None]

    def write_csv(self, cells: Iterable[Cell]) -> Path:
        """Rebuild metrics.csv atomically: the finished `cells`, then the other stored cells of the suite."""
        cells = list(cells)
        rows = self.finished_rows(cells) + self.other_rows(cells)
        columns = csv_columns(rows)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(format_row(r, columns) for r in rows)
        write_atomic(self.csv_path, buf.getvalue())
        return self.csv_path

    def write_run_info(self, info: dict[str, Any]) -> None:
        """Replace run.json with `info`."""
        write_atomic(self.run_path, json.dumps(info, indent=1))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold `<root>/.lock` while writing: a second run on the same store is refused instead of computing
        every cell twice and deleting the other's temporary files. The lock dies with its process."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "?"
                raise StoreError(f"another run (pid {holder}) is writing to {self.root}; wait for it to finish "
                                 "or give another --out") from None
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def csv_columns(rows: list[dict[str, Any]]) -> list[str]:
    """`COLUMNS`, plus `FINETUNE_COLUMNS` when a row was fine-tuned (so suites without it keep their files)."""
    return COLUMNS + (FINETUNE_COLUMNS if any(r.get("finetune_steps", 0) for r in rows) else [])


def format_row(row: dict[str, Any], columns: list[str] = COLUMNS) -> dict[str, Any]:
    """Round floats for the CSV so reruns give byte-identical files."""
    out = {}
    for key in columns:
        value = row.get(key, 0 if key == "finetune_steps" else "")
        if isinstance(value, float) and key not in ("target_sparsity",):
            value = f"{value:.6g}"
        out[key] = value
    return out


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """metrics.csv as typed rows; StoreError naming the line when the file is cut short or malformed."""
    path = Path(path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise StoreError(f"{path} lacks the column(s) {missing}; {_REBUILD}")
        rows = []
        for row in reader:
            try:
                if None in row or None in row.values():
                    raise ValueError("wrong number of fields")
                rows.append(_typed(row))
            except ValueError as err:
                raise StoreError(f"{path} line {reader.line_num} is cut short or malformed ({err}); "
                                 f"{_REBUILD}") from None
    return rows


_REQUIRED_COLUMNS = ("model", "method", "latent_prunable", "target_sparsity", "seed", "metric_name", "metric")
_REBUILD = "rerun the suite's `ctrlprune bench` command to rebuild it from the cell files"
_INT_COLUMNS = {"seed", "params", "macs", "evaluations", "finetune_steps"}
_BOOL_COLUMNS = {"in_band", "latent_prunable"}
_STR_COLUMNS = {"model", "method", "metric_name", "widths", "finetune_curve"}


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
