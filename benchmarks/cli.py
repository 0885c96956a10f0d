"""`ctrlprune`: run pruning suites, train the shipped models, inspect groups, regenerate plots.

    ctrlprune bench [--suite ae] [--fresh] [--workers 2]   run a suite (resumes unless --fresh)
    ctrlprune train ae|tdmpc [...]                         train a dense model
    ctrlprune groups --model ae                            the pruning groups of a model, as a table
    ctrlprune list                                         models, methods, suites, tasks
    ctrlprune plots results/ae                             regenerate every figure from metrics.csv
    ctrlprune summary results/ae                           rebuild summary.md and TensorBoard records
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

DEFAULT_SUITE = "ae"


def _known() -> tuple[list[str], list[str]]:
    from benchmarks.usecases import list_usecases
    from pruning import list_methods

    return list_usecases(), list_methods()


def _csv_floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _csv_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _csv_strs(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def cmd_bench(ns: argparse.Namespace) -> int:
    from benchmarks.runner import run_suite
    from benchmarks.suite import load_suite

    overrides = {"methods": ns.methods, "sparsities": ns.sparsities, "seeds": ns.seeds, "workers": ns.workers}
    suite = load_suite(ns.suite, *_known(), **overrides)
    store = run_suite(suite, root=ns.out, fresh=ns.fresh, quiet=ns.quiet)
    _finish(store.root, _reproduce_command(ns), quiet=ns.quiet)
    return 0


def _reproduce_command(ns: argparse.Namespace) -> str:
    parts = ["ctrlprune bench", f"--suite {ns.suite}"]
    for flag, value in (("--methods", ns.methods), ("--sparsities", ns.sparsities), ("--seeds", ns.seeds)):
        if value:
            parts.append(f"{flag} {','.join(map(str, value))}")
    return " ".join(parts)


def _finish(result_dir: Path, command: str, quiet: bool = False) -> None:
    """summary.md, TensorBoard records and plots from metrics.csv; print where they are."""
    from benchmarks.plots import make_plots
    from benchmarks.records import write_records
    from benchmarks.report import write_summary
    from benchmarks.store import read_csv

    summary = write_summary(result_dir, command)
    write_records(result_dir, read_csv(result_dir / "metrics.csv"), command)
    plots = make_plots(result_dir)
    if not quiet:
        print(summary.read_text())
        print(f"results: {result_dir / 'metrics.csv'}\nsummary: {summary}\nplots:   {', '.join(str(p) for p in plots)}")
        print(f"TensorBoard: tensorboard --logdir {result_dir / 'tb'}")


def cmd_summary(ns: argparse.Namespace) -> int:
    import json

    info = Path(ns.dir) / "run.json"
    command = f"ctrlprune bench --suite {json.loads(info.read_text())['suite']['name']}" if info.is_file() else "ctrlprune bench"
    _finish(Path(ns.dir), command, quiet=ns.quiet)
    return 0


def cmd_plots(ns: argparse.Namespace) -> int:
    from benchmarks.plots import make_plots

    for path in make_plots(ns.dir):
        print(path)
    return 0


def cmd_train(ns: argparse.Namespace, rest: list[str]) -> int:
    if ns.what == "ae":
        from agents.autoencoder import main as train_ae

        train_ae(rest)
    else:
        from agents.tdmpc.train import main as train_tdmpc

        train_tdmpc(rest)
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
    from benchmarks.suite import shipped_suites

    models, methods = _known()
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
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="run a pruning suite (resumable)")
    bench.add_argument("--suite", default=DEFAULT_SUITE, help="shipped suite name or a .toml path (default: ae)")
    bench.add_argument("--fresh", action="store_true", help="discard earlier results of this suite first")
    bench.add_argument("--workers", type=int, help="cells in parallel processes (default: the suite's)")
    bench.add_argument("--methods", type=_csv_strs, help="comma-separated subset of methods")
    bench.add_argument("--sparsities", type=_csv_floats, help="comma-separated target sparsities")
    bench.add_argument("--seeds", type=_csv_ints, help="comma-separated seeds")
    bench.add_argument("--out", type=Path, default=Path("results"), help="results root (default: results)")
    bench.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    train = sub.add_parser("train", help="train a dense model; `ctrlprune train ae --help` for its flags", add_help=False)
    train.add_argument("what", choices=["ae", "tdmpc"], help="which model")

    groups = sub.add_parser("groups", help="print the pruning groups of a model")
    groups.add_argument("--model", default="ae", help="use case, e.g. ae or tdmpc-cartpole-swingup")
    groups.add_argument("--checkpoint", help="checkpoint path (default: the shipped one)")
    groups.add_argument("--keep-latent", action="store_true", help="mark the latent (inter-component) groups unprunable")

    sub.add_parser("list", help="list models, methods, suites and tasks")
    for name, text in (("plots", "regenerate every figure from DIR/metrics.csv"),
                       ("summary", "rebuild summary.md, TensorBoard records and plots of DIR")):
        p = sub.add_parser(name, help=text)
        p.add_argument("dir", type=Path, help="a suite's results folder, e.g. results/ae")
        p.add_argument("--quiet", action="store_true", help="print only file names")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ctrlprune` console script; errors are one clear line, exit code 2."""
    from agents.checkpoint import CheckpointError
    from benchmarks.suite import SuiteError

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    ns, rest = parser.parse_known_args(argv)
    if rest and ns.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    handlers = {"bench": cmd_bench, "groups": cmd_groups, "list": cmd_list, "plots": cmd_plots, "summary": cmd_summary}
    try:
        code = cmd_train(ns, rest) if ns.command == "train" else handlers[ns.command](ns)
    except (SuiteError, CheckpointError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"ctrlprune {ns.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ctrlprune {ns.command}: interrupted; finished cells are kept, rerun to resume", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
