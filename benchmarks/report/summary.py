"""The summary page of a suite (markdown), computed from its metrics.csv rows and cell files."""
from __future__ import annotations

import shlex
from collections import Counter, defaultdict
from pathlib import Path
from statistics import fmean
from typing import Any

from benchmarks.report.finetune import finetune_line, finetune_table, recovery_heading, recovery_table
from benchmarks.report.tables import cell_text, group_rows, markdown_table, search_table, series_name
from benchmarks.sweep.store import DENSE, ResultsFolder, format_row, write_atomic
from pruning.registry import MASK, methods_of


def mask_note(rows: list[dict[str, Any]]) -> str:
    """What the rows of mask methods mean (nothing removed), naming the mask methods among `rows`; "" if none."""
    masked = [m for m in methods_of(MASK) if any(r["method"] == m for r in rows)]
    if not masked:
        return ""
    return (f"{', '.join(f'`{m}`' for m in masked)} {'is a mask method' if len(masked) == 1 else 'are mask methods'}: "
            "PyTorch `torch.nn.utils.prune` masks, nothing is removed (MACs unchanged, no speed-up), and a masked "
            "row keeps its bias, which acts like replacing the unit by a constant; their sparsity counts the zeroed "
            "rows and the dead input columns of the next layers.")


def compute_line(rows: list[dict[str, Any]]) -> str:
    """Total wall time of the stored cells (one worker's view: parallel workers finish a run sooner)."""
    times = [r["cell_seconds"] for r in rows if r.get("cell_seconds", float("nan")) == r.get("cell_seconds", float("nan"))]
    if not times:
        return ""
    total = sum(times)
    text = f"Compute: {total / 3600:.2f} h of cell wall time over {len(times)} cells"
    if len(times) < len(rows):
        older = len(rows) - len(times)
        text += f" ({older} cell{'s' if older > 1 else ''} stored before cell times were recorded not counted)"
    return text + "; cells run in parallel worker processes, so a run takes less wall time than this sum."


def dense_line(rows: list[dict[str, Any]]) -> str:
    dense = [r for r in rows if r["method"] == DENSE]
    if not dense:
        return ""
    value = cell_text(dense, "metric", 2, len(dense))
    return f"Dense model: {dense[0]['metric_name']} {value}, {dense[0]['params']:,} parameters, {dense[0]['macs']:,} MACs."


SUBSET_OPTIONS = ("--methods", "--sparsities", "--seeds")
"""`ctrlprune bench` options that restrict a run to part of its suite's cells."""


def whole_suite_command(command: str) -> str:
    """`command` without the options that select a subset of cells (and without --fresh, --workers and
    the output switches, which do not change any row)."""
    words, kept = shlex.split(command), []
    dropped_with_value = (*SUBSET_OPTIONS, "--workers")
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in dropped_with_value:
            skip = True
        elif word not in ("--fresh", "--quiet", "--verbose") and not word.startswith(tuple(o + "=" for o in dropped_with_value)):
            kept.append(word)
    return shlex.join(kept)


def reproduce_line(command: str) -> str:
    """How to recompute the results; `command` is "" when the run did not record one (e.g. run from Python).
    A run restricted to a subset of cells also names the command that computes the whole suite."""
    if not command:
        return "Reproduce: no command recorded (the suite was not run by `ctrlprune bench`); its fields are in run.json."
    if not any(word.split("=")[0] in SUBSET_OPTIONS for word in shlex.split(command)):
        return f"Reproduce: `{command}`"
    return (f"Reproduce: `{whole_suite_command(command)}` computes every cell of the suite (cells are independent, and "
            f"a rerun computes only the missing ones). The last run computed a subset: `{command}`.")


def _row_key(row: dict[str, Any]) -> tuple[str, ...]:
    """Identity of a row as metrics.csv stores it, so a cell file's row matches its rounded CSV row."""
    formatted = format_row(row)
    return tuple(str(formatted[key]) for key in ("method", "latent_prunable", "target_sparsity", "seed", "metric"))


def winning_starts(result_dir: Path, rows: list[dict[str, Any]]) -> str:
    """Which start of a multi-start search (`best_start` in a cell file's `extra.search`) produced each
    current row, counted per series; "" when no cell records one."""
    current = {_row_key(r) for r in rows}
    counts: dict[str, Counter] = defaultdict(Counter)
    for blob in ResultsFolder(result_dir).cell_blobs():
        start = blob.get("extra", {}).get("search", {}).get("best_start")
        if start and _row_key(blob["row"]) in current:
            counts[series_name(blob["row"])][start] += 1
    if not counts:
        return ""
    lines = ["| method | cells per winning start |", "|---|---|"]
    order = [series for series in group_rows(rows) if series in counts]
    lines += [f"| {series} | {', '.join(f'{name} {n}' for name, n in counts[series].most_common())} |" for series in order]
    return "\n".join(lines)


def final_selections(result_dir: Path, rows: list[dict[str, Any]]) -> str:
    """What the gradient options `final_candidates` and `final_widen` did in each series and level
    (`final_selection` in a cell file's `extra.search`: [surrogate, validation metric, widths, origin] per
    hardened solution; origin "search" or "widened <group>", absent in older cells); "" when no cell records
    one."""
    current = {_row_key(r) for r in rows}
    found: dict[tuple[str, float], list[tuple[float, float, float, bool, bool]]] = defaultdict(list)
    for blob in ResultsFolder(result_dir).cell_blobs():
        candidates = blob.get("extra", {}).get("search", {}).get("final_selection")
        if candidates and _row_key(blob["row"]) in current:
            by_surrogate = min(candidates, key=lambda c: c[0])
            chosen = max(candidates, key=lambda c: c[1])
            widened = len(chosen) > 3 and chosen[3].startswith("widened")
            key = (series_name(blob["row"]), blob["row"]["target_sparsity"])
            found[key].append((by_surrogate[1], chosen[1], blob["row"]["metric"], chosen[2] != by_surrogate[2], widened))
    if not found:
        return ""
    lines = ["| method | ρ | cells | choice changed | chosen widened | validation metric, surrogate's pick "
             "| validation metric, chosen | metric of the chosen (mean) |", "|---|---|---|---|---|---|---|---|"]
    for (series, level), cells in sorted(found.items()):
        picked, chosen, metric = (fmean(c[i] for c in cells) for i in range(3))
        lines.append(f"| {series} | {level:g} | {len(cells)} | {sum(c[3] for c in cells)} | {sum(c[4] for c in cells)} "
                     f"| {picked:.1f} | {chosen:.1f} | {metric:.1f} |")
    return "\n".join(lines)


def summary_markdown(rows: list[dict[str, Any]], title: str, command: str, starts: str = "",
                     selections: str = "") -> str:
    """The whole summary page of a suite; `starts` is the table of `winning_starts`, `selections` that of
    `final_selections`."""
    if not rows:
        return f"# {title}\n\nNo finished cells yet.\n"
    metric = rows[0]["metric_name"]
    parts = [
        f"# {title}", reproduce_line(command), dense_line(rows),
        f"## {metric} (mean ± std over seeds; a value without ± comes from one seed)", markdown_table(rows, "metric"),
        "## Achieved sparsity", markdown_table(rows, "achieved_sparsity", 3),
        "## Latent stability: linear CKA to the dense latents", markdown_table(rows, "latent_cka", 3),
    ]
    optional = [("metric_std", f"## {metric}: spread over evaluation episodes (std within a cell, mean over seeds)", 2),
                ("rollout_error", "## Relative error of 5-step latent rollouts against the dense model", 3),
                ("latency_ms_b1", "## Latency of one planned action / batch-1 forward (ms, median)", 1)]
    for key, heading, digits in optional:
        if any(r.get(key, 0) == r.get(key, 0) and r.get(key, 0) != 0 for r in rows if r["method"] != DENSE):
            parts += [heading, markdown_table(rows, key, digits)]
    tuned = finetune_table(rows)
    if tuned:
        parts += [f"## {metric} before → after fine-tuning (mean over seeds; {finetune_line(rows)})", tuned,
                  f"## {metric} along the recovery curve ({recovery_heading(rows)})", recovery_table(rows)]
    parts += ["## Search cost", search_table(rows), compute_line(rows)]
    if starts:
        parts += ["## Winning start of the multi-start searches", starts]
    if selections:
        parts += ["## Final selection among the search's best solutions (means over seeds)", selections]
    parts.append(mask_note(rows))
    return "\n\n".join(p for p in parts if p) + "\n"


def suite_summary(result_dir: Path, rows: list[dict[str, Any]], title: str, command: str) -> str:
    """`summary_markdown` of a result folder's rows, with the winning starts and final selections its cell files
    record."""
    return summary_markdown(rows, title, command, winning_starts(result_dir, rows), final_selections(result_dir, rows))


def write_summary(result_dir: Path, command: str) -> Path:
    """Write summary.md next to metrics.csv."""
    rows = ResultsFolder(result_dir).rows()
    path = result_dir / "summary.md"
    write_atomic(path, suite_summary(result_dir, rows, f"Suite {result_dir.name}", command))
    return path
