"""`ctrlprune`: run pruning suites, train the shipped models, inspect groups, regenerate plots.

    ctrlprune bench [--suite ae] [--fresh] [--workers 2]   run a suite (resumes unless --fresh)
    ctrlprune bench --suite ae --dry-run                   which cells are done, which would run
    ctrlprune train ae|tdmpc [...]                         train a dense model
    ctrlprune groups --model ae                            the pruning groups of a model, as a table
    ctrlprune list                                         models, methods, suites, tasks
    ctrlprune plots results/ae                             regenerate every figure from metrics.csv
    ctrlprune summary results/ae                           rebuild summary.md and TensorBoard records
    ctrlprune records results/ae                           rebuild only the TensorBoard records (tb/, tb-hparams/)
    ctrlprune report results/ae [--html]                   one page: summary tables and figures
    ctrlprune table results/ae --seeds 0 --bold-best       one column of metrics.csv as a markdown table
    ctrlprune prune --model ae --method gradient --sparsity 0.5 --out p.pt   prune once, save safely
    ctrlprune eval p.pt                                    load a saved pruned model and score it
    ctrlprune ablate results/ae --method gradient --sparsity 0.5   a solution with each component restored
    ctrlprune ablate --model ae --widths 'encoder.0:256;...' --as-found   score hand-chosen widths
    ctrlprune targets results/tdmpc-cartpole-swingup ...   the TD-MPC pruning targets and their verdicts
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from agents.device import DEVICES, resolve_device

if TYPE_CHECKING:
    from benchmarks.sweep.suite import Suite

os.environ.setdefault("MUJOCO_GL", "egl")

DEFAULT_SUITE = "ae"
DEFAULT_OUT = Path("results")


def _csv_floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _csv_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _csv_strs(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


PROJECT_PACKAGES = tuple(Path(__file__).resolve().parents[1] / name for name in ("agents", "benchmarks", "envs", "pruning"))
"""The packages whose `raise` statements are the project's own checks of its input."""


def raised_by_a_check(err: BaseException) -> bool:
    """Whether `err` comes from a `raise` statement in the project's packages: a check of the input, which one
    line explains. An error raised anywhere else (inside torch, say) is a bug, whose traceback is shown."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return True
    innermost = frames[-1]
    where = Path(innermost.filename).resolve()
    in_project = any(where.is_relative_to(package) for package in PROJECT_PACKAGES)
    return in_project and (innermost.line or "").lstrip().startswith("raise")


def describe_os_error(err: OSError) -> str:
    """An OSError as one line: 'what went wrong: path' (no errno noise)."""
    where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
    return f"{err.strerror or err}: {where}" if where else str(err.strerror or err)


def _writable_folder(path: Path, flag: str) -> None:
    """OSError/ValueError unless files can be created in `path` or, when it does not exist yet, in its nearest
    existing parent (tried with a temporary file that is removed at once: nothing is left behind)."""
    import tempfile

    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {path}: {existing} is a file, not a folder")
    with tempfile.TemporaryFile(dir=existing):
        pass


def check_output_folder(path: Path, flag: str) -> None:
    """Refuse before any work an output folder that is a file or cannot be written."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder")
    _writable_folder(path, flag)


def check_output_file(path: Path, flag: str) -> None:
    """Refuse before any work an output file that is a folder or whose folder cannot be written."""
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder, not a file")
    _writable_folder(path.parent, flag)


def cmd_bench(ns: argparse.Namespace) -> int:
    import dataclasses

    from benchmarks.sweep.executors import make_executor
    from benchmarks.sweep.runner import run_suite
    from benchmarks.sweep.suite import load_suite

    overrides = {"methods": ns.methods, "sparsities": ns.sparsities, "seeds": ns.seeds, "workers": ns.workers,
                 "device": ns.device}
    suite = load_suite(ns.suite, **overrides)
    full_suite = load_suite(ns.suite) if ns.methods else None  # fingerprints the stored cells of the other methods
    resolve_device(suite.device)  # no GPU for `cuda`: refused before any result is touched
    if ns.dry_run:
        return _print_pending(suite, ns.out, ns.fresh, full_suite)
    executor = make_executor(ns.executor, ns.address)  # fails (e.g. Ray missing) before any result is touched
    check_output_folder(ns.out, "--out")
    suite = dataclasses.replace(suite, plugins=tuple(dict.fromkeys([*ns.plugin, *suite.plugins])))  # for the workers
    command = _reproduce_command(ns)
    store = run_suite(suite, root=ns.out, fresh=ns.fresh, quiet=ns.quiet, on_cell=_print_row if ns.verbose else None,
                      executor=executor, command=command, full_suite=full_suite)
    _finish(store.root, command, quiet=ns.quiet)
    return 0


def _print_pending(suite: Suite, out: Path, fresh: bool, full_suite: Suite | None) -> int:
    """`bench --dry-run`: how many cells are done and which ones a run would compute."""
    from benchmarks.sweep.cells import describe_cells, estimate_seconds
    from benchmarks.sweep.runner import pending_cells

    cells, pending, done = pending_cells(suite, out, full_suite)
    todo = cells if fresh else pending
    done_count = len(cells) - len(pending)
    print(f"{suite.name}: {len(cells)} cells, {done_count} done, {len(todo)} to run"
          + (f" (--fresh recomputes the {done_count} done one(s), each replaced when its new row is stored; "
             "no other stored cell is touched)" if fresh and done_count else ""))
    for line in describe_cells(todo):
        print(f"  {line}")
    seconds, unknown = estimate_seconds(todo, done)
    if todo and len(unknown) < len({c.method for c in todo}):
        print(f"estimated compute: {seconds / 3600:.2f} h of cell time on one worker (about {seconds / 3600 / suite.workers:.2f} h "
              f"of wall time with {suite.workers} workers), from the mean time of the stored cells of each method"
              + (f"; not counted: {', '.join(unknown)} (no timed cell yet)" if unknown else ""))
    return 0


def _print_row(cell, row: dict) -> None:
    from tqdm import tqdm

    tqdm.write(f"{cell}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


def _reproduce_command(ns: argparse.Namespace) -> str:
    """The `ctrlprune bench` command that recomputes these results: suite name or path as given, plugins, subsets."""
    plugins = [f"--plugin {shlex.quote(m)}" for m in ns.plugin]
    parts = ["ctrlprune", *plugins, "bench", f"--suite {shlex.quote(ns.suite)}"]
    for flag, value in (("--methods", ns.methods), ("--sparsities", ns.sparsities), ("--seeds", ns.seeds)):
        if value:
            parts.append(f"{flag} {shlex.quote(','.join(map(str, value)))}")
    if ns.out != DEFAULT_OUT:
        parts.append(f"--out {shlex.quote(str(ns.out))}")
    if ns.device:
        parts.append(f"--device {ns.device}")
    return " ".join(parts)


def _finish(result_dir: Path, command: str, quiet: bool = False) -> None:
    """summary.md, TensorBoard records and plots from metrics.csv; print where they are."""
    from benchmarks.report.plots import make_plots
    from benchmarks.records import write_records
    from benchmarks.report.summary import write_summary
    from benchmarks.sweep.store import ResultsFolder

    summary = write_summary(result_dir, command)
    write_records(result_dir, ResultsFolder(result_dir).rows(), command)
    plots = make_plots(result_dir)
    if not quiet:
        print(summary.read_text())
        print(f"results: {result_dir / 'metrics.csv'}\nsummary: {summary}\nplots:   {', '.join(str(p) for p in plots)}")
        print(f"TensorBoard: tensorboard --logdir {result_dir / 'tb'}  (HParams: --logdir {result_dir / 'tb-hparams'})")


def _recorded_command(result_dir: Path) -> str:
    """The command run.json recorded; for older runs, the shipped suite of that name; "" when unknown."""
    from benchmarks.sweep.store import ResultsFolder
    from benchmarks.sweep.suite import shipped_suites

    recorded = ResultsFolder(result_dir).run_info()
    if recorded.get("command"):
        return recorded["command"]
    name = recorded.get("suite", {}).get("name", result_dir.name)
    return f"ctrlprune bench --suite {name}" if name in shipped_suites() else ""


def cmd_summary(ns: argparse.Namespace) -> int:
    _finish(Path(ns.dir), _recorded_command(Path(ns.dir)), quiet=ns.quiet)
    return 0


def cmd_records(ns: argparse.Namespace) -> int:
    from benchmarks.records import write_records
    from benchmarks.sweep.store import ResultsFolder

    tb = write_records(Path(ns.dir), ResultsFolder(ns.dir).rows(), _recorded_command(Path(ns.dir)))
    print(f"TensorBoard: tensorboard --logdir {tb}  (HParams: --logdir {tb.with_name('tb-hparams')})")
    return 0


def cmd_plots(ns: argparse.Namespace) -> int:
    from benchmarks.report.plots import make_plots

    for path in make_plots(ns.dir):
        print(path)
    return 0


def cmd_report(ns: argparse.Namespace) -> int:
    from benchmarks.report.plots import make_plots

    page = write_report(Path(ns.dir), make_plots(ns.dir), html=ns.html)
    print(page)
    return 0


def cmd_table(ns: argparse.Namespace) -> int:
    from benchmarks.report.tables import markdown_table
    from benchmarks.sweep.store import ResultsFolder

    folder = ResultsFolder(ns.dir)
    rows = folder.rows()
    if ns.seeds is not None:
        rows = [r for r in rows if r["seed"] in ns.seeds]
    if not rows or ns.key not in rows[0]:
        raise ValueError(f"no rows with seeds {ns.seeds} in {folder.csv_path}" if not rows else
                         f"unknown column {ns.key!r}; metrics.csv has: {', '.join(rows[0])}")
    print(markdown_table(rows, ns.key, ns.digits, bold_best=ns.bold_best))
    return 0


def write_report(result_dir: Path, figures: list[Path], html: bool = False) -> Path:
    """DIR/report.md: the summary tables plus every figure as a relative image link (and report.html)."""
    from benchmarks.report.summary import suite_summary
    from benchmarks.sweep.store import ResultsFolder, write_atomic

    images = [f"### {p.stem.replace('_', ' ')}\n\n![{p.stem}]({p.relative_to(result_dir).as_posix()})" for p in figures]
    rows = ResultsFolder(result_dir).rows()
    text = suite_summary(result_dir, rows, f"Report: {result_dir.name}", _recorded_command(result_dir))
    text += "\n## Figures\n\n" + "\n\n".join(images) + "\n"
    write_atomic(result_dir / "report.md", text)
    if html:
        import markdown

        body = markdown.markdown(text, extensions=["tables"])
        write_atomic(result_dir / "report.html", f"<!doctype html><meta charset='utf-8'><title>{result_dir.name}</title>\n{body}\n")
    return result_dir / "report.md"


def cmd_prune(ns: argparse.Namespace) -> int:
    from benchmarks.pruned import save_pruned
    from benchmarks.sweep.evaluate import prune_cell
    from benchmarks.sweep.suite import registered_names, validate_seed, validate_sparsity
    from benchmarks.usecases import get_usecase, is_known_usecase
    from pruning import get_method
    import torch

    validate_sparsity(ns.sparsity, "--sparsity")
    validate_seed(ns.seed, "--seed")
    get_method(ns.method)  # an unknown method fails before anything loads
    models, _ = registered_names()
    if not is_known_usecase(ns.model):
        raise ValueError(f"unknown model {ns.model!r}; valid models: {models}")
    if ns.out.suffix != ".pt":
        raise ValueError(f"--out {ns.out} must end in .pt")
    check_output_file(ns.out, "--out")
    usecase = get_usecase(ns.model, ns.checkpoint or "")
    usecase.set_device(resolve_device(ns.device))
    dense = usecase.load()
    torch.manual_seed(ns.seed)
    result = prune_cell(usecase, dense, ns.method, ns.sparsity, seed=ns.seed, latent_prunable=not ns.keep_latent,
                        eps=ns.eps, options=usecase.method_options(ns.method))
    path = save_pruned(ns.out, usecase, result, ns.seed, not ns.keep_latent, ns.eps)
    print(repr(result))
    if not result.in_band:
        print(f"warning: achieved sparsity {result.achieved:.4f} is outside {ns.sparsity} ± {ns.eps}", file=sys.stderr)
    plugins = "".join(f"--plugin {shlex.quote(m)} " for m in ns.plugin)
    print(f"saved: {path}  (score it with: ctrlprune {plugins}eval {path})")
    return 0


def cmd_eval(ns: argparse.Namespace) -> int:
    from benchmarks.pruned import load_pruned
    from benchmarks.sweep.suite import validate_seed

    validate_seed(ns.seed, "--seed")
    device = resolve_device(ns.device)
    loaded = load_pruned(ns.file)
    loaded.usecase.set_device(device)
    c = loaded.config
    metric, spread = loaded.usecase.evaluate(loaded.model, ns.seed)
    print(f"model: {c['model']}  method: {c['method']}  target: {c['target']}  seed: {c['seed']}  "
          f"latent prunable: {c['latent_prunable']}  masked: {c['masked']}")
    print(f"{loaded.usecase.metric_name}: {metric:.4f} ± {spread:.4f}")
    print(f"sparsity: {loaded.sparsity:.4f}  params: {loaded.params:,}")
    print("widths: " + ", ".join(f"{k}:{v}" for k, v in loaded.widths.items()))
    return 0


def _model_options(pairs: list[str]) -> dict:
    """KEY=VALUE use-case options; values are read as TOML (numbers, booleans, quoted strings)."""
    import tomllib

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--model-option takes KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"--model-option {pair!r}: {value!r} is not a TOML value ({err})") from None
    return options


def cmd_ablate(ns: argparse.Namespace) -> int:
    from benchmarks.ablation import (ablate, ablation_table, check_width_method, method_importance, method_setting,
                                     stored_cell)
    from benchmarks.sweep.store import ResultsFolder, write_atomic
    from benchmarks.sweep.suite import validate_seed
    from benchmarks.usecases import get_usecase

    validate_seed(ns.seed, "--seed")
    if ns.out:
        check_output_file(ns.out, "--out")
    options: dict = {}
    if ns.dir is not None:
        if ns.sparsity is None or ns.widths:
            raise ValueError("with DIR, give --sparsity (and --method, --seed, --keep-latent) instead of --widths")
        model, widths = stored_cell(ns.dir, ns.method, ns.sparsity, ns.seed, not ns.keep_latent)
        options = ResultsFolder(ns.dir).run_info().get("suite", {}).get("model_options", {})
    elif ns.model and ns.widths:
        check_width_method(ns.method)
        model, widths = ns.model, ns.widths
    else:
        raise ValueError("give a results folder DIR with --sparsity, or --model with --widths")
    options.update(_model_options(ns.model_option))
    usecase = get_usecase(model, ns.checkpoint or "", **options)
    usecase.set_device(resolve_device(ns.device))
    rows = ablate(usecase, widths, ns.seed, not ns.keep_latent, method_importance(usecase, ns.method),
                  variants=not ns.as_found, mean_replacement=bool(method_setting(usecase, ns.method, "mean_replacement")))
    table = ablation_table(rows, usecase.metric_name)
    print(table, end="")
    if ns.out:
        write_atomic(ns.out, table)
        print(f"written: {ns.out}")
    return 0


def cmd_targets(ns: argparse.Namespace) -> int:
    from benchmarks.sweep.store import write_atomic
    from benchmarks.report.targets import targets_markdown

    if ns.out:
        check_output_file(ns.out, "--out")
    text = targets_markdown(ns.dirs)
    print(text, end="")
    if ns.out:
        write_atomic(ns.out, text)
        print(f"written: {ns.out}")
    return 0


def cmd_train(ns: argparse.Namespace, rest: list[str]) -> int:
    if ns.what is None:
        if {"-h", "--help"} & set(rest):
            ns.train_parser.print_help()
            return 0
        raise ValueError("say which model to train: ctrlprune train ae|tdmpc [...] (`ctrlprune train tdmpc --help`)")
    if ns.what == "ae":
        from agents.autoencoder import main as train_ae

        train_ae(rest)
    else:
        from agents.tdmpc.train import main as train_tdmpc

        train_tdmpc([f"--plugin={m}" for m in ns.plugin] + rest)  # recorded in its checkpoints and train.log
    return 0


def cmd_groups(ns: argparse.Namespace) -> int:
    from benchmarks.usecases import get_usecase
    from pruning import build_groups, format_group_table

    usecase = get_usecase(ns.model, ns.checkpoint or "")
    model = usecase.load()
    problem = usecase.problem(model, seed=0, latent_prunable=not ns.keep_latent)
    print(repr(model))
    print(format_group_table(build_groups(problem)))
    return 0


def cmd_list(ns: argparse.Namespace) -> int:
    from benchmarks.sweep.suite import registered_names, shipped_suites

    models, methods = registered_names()
    print("models: ", ", ".join(models))
    print("methods:", ", ".join(methods))
    print("suites: ", ", ".join(shipped_suites()))
    try:
        from envs import list_tasks

        print("tasks:  ", ", ".join(list_tasks()))
    except ImportError:
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctrlprune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, also print its traceback (errors of the input are one line without it)")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (it may register use cases, tasks or methods); repeatable")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="run a pruning suite (resumable)")
    bench.add_argument("--suite", default=DEFAULT_SUITE, help="shipped suite name or a .toml path (default: ae)")
    bench.add_argument("--fresh", action="store_true", help="discard earlier results of this suite first")
    bench.add_argument("--dry-run", action="store_true",
                       help="print how many cells are done and which ones would run; compute and write nothing")
    bench.add_argument("--workers", type=int, help="cells in parallel processes (default: the suite's)")
    bench.add_argument("--device", choices=DEVICES, help="where cells evaluate (default: the suite's, else cpu)")
    bench.add_argument("--methods", type=_csv_strs, help="comma-separated subset of methods")
    bench.add_argument("--sparsities", type=_csv_floats, help="comma-separated target sparsities")
    bench.add_argument("--seeds", type=_csv_ints, help="comma-separated seeds")
    bench.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results root (default: {DEFAULT_OUT})")
    bench.add_argument("--executor", choices=["local", "ray"], default="local",
                       help="where cells run: this machine (default) or Ray tasks (pip install '.[ray]')")
    bench.add_argument("--address", metavar="ADDR", help="Ray cluster to join, e.g. head:6379 (default: a local Ray instance)")
    talk = bench.add_mutually_exclusive_group()
    talk.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    talk.add_argument("--verbose", action="store_true", help="also print each finished cell's row")

    train = sub.add_parser("train", help="train a dense model; `ctrlprune train ae --help` for its flags", add_help=False,
                           epilog="`ctrlprune train ae --help` and `ctrlprune train tdmpc --help` list each model's flags")
    train.set_defaults(train_parser=train)
    train.add_argument("what", nargs="?", choices=["ae", "tdmpc"],
                       help="which model: ae (MNIST autoencoder) or tdmpc (TD-MPC agent on a task)")

    groups = sub.add_parser("groups", help="print the pruning groups of a model")
    groups.add_argument("--model", default="ae", help="use case, e.g. ae or tdmpc-cartpole-swingup")
    groups.add_argument("--checkpoint", help="checkpoint path (default: the shipped one)")
    groups.add_argument("--keep-latent", action="store_true", help="mark the latent (inter-component) groups unprunable")

    sub.add_parser("list", help="list models, methods, suites and tasks")
    for name, text in (("plots", "regenerate every figure from DIR/metrics.csv"),
                       ("summary", "rebuild summary.md, TensorBoard records and plots of DIR"),
                       ("records", "rebuild only the TensorBoard records of DIR (tb/ and tb-hparams/)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("dir", type=Path, help="a suite's results folder, e.g. results/ae")
        p.add_argument("--quiet", action="store_true", help="print only file names")
    report = sub.add_parser("report", help="write DIR/report.md: summary tables and every figure")
    report.add_argument("dir", type=Path, help="a suite's results folder, e.g. results/ae")
    report.add_argument("--html", action="store_true", help="also write DIR/report.html")

    table = sub.add_parser("table", help="print one column of DIR/metrics.csv as a markdown table")
    table.add_argument("dir", type=Path, help="a suite's results folder, e.g. results/tdmpc-walker-walk")
    table.add_argument("--key", default="metric", help="column to tabulate (default: metric)")
    table.add_argument("--seeds", type=_csv_ints, help="only these seeds (default: all, mean ± std over them)")
    table.add_argument("--digits", type=int, default=2, help="decimals (default 2)")
    table.add_argument("--bold-best", action="store_true", help="bold the highest mean per column and latent setting")

    prune = sub.add_parser("prune", help="prune one model once and save it (safe, weights-only file)")
    prune.add_argument("--model", default="ae", help="use case, e.g. ae or tdmpc-cartpole-swingup")
    prune.add_argument("--method", required=True, help="pruning method, see `ctrlprune list`")
    prune.add_argument("--sparsity", type=float, required=True, help="target sparsity in [0, 1)")
    prune.add_argument("--seed", type=int, default=0, help="seed of the search (default 0)")
    prune.add_argument("--eps", type=float, default=0.01, help="tolerance of the sparsity band (default 0.01)")
    prune.add_argument("--keep-latent", action="store_true", help="keep the latent (inter-component) width whole")
    prune.add_argument("--checkpoint", help="dense checkpoint (default: the shipped one)")
    prune.add_argument("--out", type=Path, required=True, help="output file, *.pt")
    prune.add_argument("--device", choices=DEVICES, default="cpu", help="where the model is evaluated (default cpu)")

    evaluate = sub.add_parser("eval", help="load a pruned model saved by `prune` and score it")
    evaluate.add_argument("file", type=Path, help="a file written by `ctrlprune prune`")
    evaluate.add_argument("--seed", type=int, default=0, help="evaluation seed (default 0)")
    evaluate.add_argument("--device", choices=DEVICES, default="cpu", help="where the model is evaluated (default cpu)")

    ablate = sub.add_parser("ablate", help="score a grid/gradient solution with one component at a time restored")
    ablate.add_argument("dir", nargs="?", type=Path, help="a suite's results folder: the cell's widths come from its metrics.csv")
    ablate.add_argument("--method", default="gradient", help="a width-searching method (default: gradient; "
                        "the shipped ones are gradient, grid and grid-group)")
    ablate.add_argument("--sparsity", type=float, help="target sparsity of the cell (with DIR)")
    ablate.add_argument("--seed", type=int, default=0, help="cell seed: ranking, surrogate data, evaluation (default 0)")
    ablate.add_argument("--keep-latent", action="store_true", help="the cell with the latent width kept")
    ablate.add_argument("--model", help="use case (with --widths, instead of DIR)")
    ablate.add_argument("--widths", help="kept widths 'group:width;...', as in the widths column of metrics.csv")
    ablate.add_argument("--checkpoint", help="dense checkpoint (default: the shipped one)")
    ablate.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a use-case option (as in a suite's model_options), e.g. choice_weight=0; repeatable")
    ablate.add_argument("--as-found", action="store_true",
                        help="score only the given widths, without the restored-component variants")
    ablate.add_argument("--out", type=Path, help="also write the table to this markdown file")
    ablate.add_argument("--device", choices=DEVICES, default="cpu", help="where the models are evaluated (default cpu)")

    targets = sub.add_parser("targets", help="judge the pruning targets a suite's use case declares from its metrics.csv")
    targets.add_argument("dirs", nargs="+", type=Path, help="results folders, e.g. results/tdmpc-cartpole-swingup")
    targets.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ctrlprune` console script. Errors of the input are one clear line, exit code 2; an
    error raised outside the project's checks (a bug) prints its traceback, exit code 1."""
    from agents.checkpoint import CheckpointError
    from benchmarks.sweep.suite import SuiteError, import_plugins

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    ns, rest = parser.parse_known_args(argv)
    if rest and ns.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if ns.command != "train":  # training takes its own --threads
        import torch

        torch.set_num_threads(1)  # small networks: one thread is fastest, and never oversubscribes a shared core
    handlers = {"bench": cmd_bench, "groups": cmd_groups, "list": cmd_list, "plots": cmd_plots, "summary": cmd_summary,
                "records": cmd_records,
                "report": cmd_report, "table": cmd_table, "prune": cmd_prune, "eval": cmd_eval, "ablate": cmd_ablate,
                "targets": cmd_targets}
    try:
        import_plugins(ns.plugin)
        code = cmd_train(ns, rest) if ns.command == "train" else handlers[ns.command](ns)
    except (SuiteError, CheckpointError, ValueError, RuntimeError) as err:
        if ns.traceback or not raised_by_a_check(err):
            traceback.print_exc()
        if not raised_by_a_check(err):
            print(f"ctrlprune {ns.command}: internal error (a bug, not your input): {type(err).__name__}: {err}",
                  file=sys.stderr)
            return 1
        print(f"ctrlprune {ns.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a missing file, a read-only or full disk, a file where a folder belongs, ...
        if ns.traceback:
            traceback.print_exc()
        print(f"ctrlprune {ns.command}: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ctrlprune {ns.command}: interrupted; finished cells are kept, rerun to resume", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
