"""Malformed suites and command lines end in a one-line error (SuiteError / exit code 2), never a traceback or a results file."""
import contextlib
import io
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.cli import main
from benchmarks.sweep.suite import Suite, SuiteError, parse_suite
from benchmarks.usecases import is_known_usecase, list_usecases
from pruning import list_methods

MODELS, METHODS = list_usecases(), list_methods()
VALID = {"name": "ok", "model": "ae", "methods": ["tp-magnitude", "gradient"], "sparsities": [0.2, 0.5],
         "seeds": [0, 1], "eps": 0.01, "latent_prunable": [True, False], "workers": 1,
         "method_options": {"gradient": {"steps": 10}}, "model_options": {}, "checkpoint": "", "description": "x"}
FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=12)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                      max_leaves=8)
field_names = st.sampled_from(sorted(VALID)) | st.text(max_size=10)


def _assert_clean_outcome(raw: dict) -> None:
    try:
        suite = parse_suite(raw, MODELS, METHODS)
    except SuiteError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert isinstance(suite, Suite) and suite.methods and all(0 <= s < 1 for s in suite.sparsities)


@FAST
@given(st.dictionaries(field_names, values, max_size=8))
def test_random_suite_dicts_are_valid_or_suite_errors(raw: dict) -> None:
    _assert_clean_outcome(raw)


@FAST
@given(st.sampled_from(sorted(VALID)), values)
def test_one_bad_field_in_a_valid_suite(key: str, value) -> None:
    _assert_clean_outcome({**VALID, key: value})


def test_the_valid_suite_parses() -> None:
    suite = parse_suite(VALID, MODELS, METHODS)
    assert suite.latent_prunable == (True, False) and suite.sparsities == (0.2, 0.5)


# --- the command line: every generated case is invalid in at least one argument ---------------------------

def _csv(items: list) -> str:
    return ",".join(str(i) for i in items)


words = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=10)
bad_level = st.floats(allow_nan=True).filter(lambda x: math.isnan(x) or not 0 <= x < 1)
bad_method = words.filter(lambda m: m not in METHODS and "," not in m and m.strip())
bad_model = words.filter(lambda m: not is_known_usecase(m) and not m.startswith("-"))
bench_poison = st.one_of(
    st.lists(bad_level, min_size=1, max_size=3).map(lambda xs: ["--sparsities", _csv([0.2, *xs])]),
    words.filter(lambda w: "," in w or not w.replace(".", "").isdigit()).map(lambda w: ["--sparsities", w + "x"]),
    bad_method.map(lambda m: ["--methods", f"tp-magnitude,{m}"]),
    st.integers(max_value=-1).map(lambda s: ["--seeds", f"0,{s}"]),
    (st.integers(max_value=0) | st.integers(min_value=65)).map(lambda w: ["--workers", str(w)]),
    words.filter(lambda w: "." not in w and "/" not in w and w not in ("ae", "ae-tiny") and not w.startswith("-"))
    .map(lambda w: ["--suite", w]),
    st.sampled_from(["--nope", "--seeds=a", "--fresh=1", "--quiet --verbose"]).map(str.split),
)
bench_extra = st.sampled_from([[], ["--fresh"], ["--quiet"], ["--verbose"], ["--seeds", "0"], ["--sparsities", "0.3"]])
prune_poison = st.one_of(
    bad_level.map(lambda x: ["--sparsity", str(x), "--method", "tp-magnitude"]),
    bad_method.map(lambda m: ["--sparsity", "0.3", "--method", m]),
    bad_model.map(lambda m: ["--sparsity", "0.3", "--method", "tp-magnitude", "--model", m]),
    st.just(["--method", "tp-magnitude"]),
)


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own usage errors
            code = exit_.code
    return code, err.getvalue()


def _assert_refused(argv: list[str], out: Path) -> None:
    code, err = _run(argv)
    assert code == 2, (argv, err)
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("ctrlprune") and "error:" in last, (argv, err)
    assert not any(out.rglob("*")), f"{argv} left files behind"


@FAST
@given(bench_poison, bench_extra)
def test_bad_bench_arguments_fail_cleanly_before_any_work(poison: list[str], extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _assert_refused(["bench", "--suite", "ae-tiny", "--out", tmp, *extra, *poison], Path(tmp))


@FAST
@given(prune_poison, st.booleans())
def test_bad_prune_arguments_fail_cleanly_before_any_work(poison: list[str], keep_latent: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["prune", "--out", f"{tmp}/p.pt", *poison] + (["--keep-latent"] if keep_latent else [])
        _assert_refused(argv, Path(tmp))


def test_eval_of_a_missing_file_and_an_unknown_command(tmp_path) -> None:
    _assert_refused(["eval", str(tmp_path / "nothing.pt")], tmp_path)
    _assert_refused(["frobnicate"], tmp_path)
    _assert_refused(["--plugin", "no_such_module_here", "list"], tmp_path)
    _assert_refused(["report", str(tmp_path / "no-results")], tmp_path)


def test_unknown_model_options_are_refused_with_the_valid_ones(tmp_path) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text('name = "bad"\nmodel = "ae"\nmethods = ["tp-magnitude"]\nsparsities = [0.2]\nseeds = [0]\n'
                     'model_options = { calib_images = 512, bogus = 1 }\n')
    out = tmp_path / "out"
    code, err = _run(["bench", "--suite", str(suite), "--out", str(out)])
    assert code == 2 and "unknown option(s) ['bogus'] of model 'ae'" in err and "calib_images" in err
    assert not out.exists()
    code, err = _run(["ablate", "--model", "ae", "--widths", "encoder.0:100", "--model-option", "bogus=1"])
    assert code == 2 and "unknown option(s) ['bogus']" in err
    code, err = _run(["ablate", "--model", "ae", "--widths", "encoder.0:100", "--model-option", "calib_images"])
    assert code == 2 and "KEY=VALUE" in err


def test_an_error_inside_torch_is_a_bug_shown_with_its_traceback(monkeypatch, capsys, tmp_path) -> None:
    import torch

    from benchmarks import cli

    def float64_batch(ns) -> int:  # a float64 observation into a float32 layer, as a gymnasium task once gave
        torch.nn.Linear(3, 2)(torch.zeros(1, 3, dtype=torch.float64))
        return 0

    monkeypatch.setattr(cli, "cmd_list", float64_batch)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error (a bug, not your input): RuntimeError" in err and "dtype" in err
    assert main(["table", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("ctrlprune table: error: no metrics.csv")
    assert main(["--traceback", "table", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("ctrlprune table: error: no metrics.csv")
