"""Every method and model option is checked (name, type, value) when a suite loads, from the options'
declared types, so a bad one stops the run before any cell or file is written."""
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.cli import main
from benchmarks.sweep.suite import MAX_SEED, SuiteError, load_suite
from pruning import GradientConfig, GridConfig
from pruning.registry import check_method_options, fits_type

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
HEAD = 'name = "bad"\nmodel = "ae"\nsparsities = [0.2]\nseeds = [0]\n'


def _suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(HEAD + body)
    return path


@pytest.mark.parametrize("body, message", [
    ('methods = ["grid-group"]\n[method_options.grid-group]\nbudget = "lots"\n',
     "method_options.grid-group: method 'grid-group' option 'budget' must be int or None, got str 'lots'"),
    ('methods = ["grid-group"]\n[method_options.grid-group]\nbudgett = 12\n', "unknown options ['budgett']"),
    ('methods = ["grid-group"]\n[method_options.grid-group]\nbudget = 0\n', "budget must be >= 1"),
    ('methods = ["gradient"]\n[method_options.gradient]\nstarts = ["uniform", "sideways"]\n', "starts must be"),
    ('methods = ["gradient"]\n[method_options.gradient]\nsteps = 2.5\n', "option 'steps' must be int"),
    ('methods = ["tp-magnitude"]\n[method_options.tp-magnitude]\nbudget = 3\n', "unknown options ['budget']"),
    ('methods = ["tp-magnitude"]\nmodel_options = { valid_images = "abc" }\n',
     "model_options: model 'ae' option 'valid_images' must be int, got str 'abc'"),
    ('methods = ["tp-magnitude"]\nmodel_options = { checkpoint = "x.pt" }\n', "unknown option(s) ['checkpoint']"),
])
def test_bad_options_are_refused_at_load_and_by_the_dry_run(tmp_path: Path, capsys, body: str, message: str) -> None:
    path = _suite(tmp_path, body)
    with pytest.raises(SuiteError) as err:
        load_suite(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)
    out = tmp_path / "out"
    for extra in (["--dry-run"], []):
        assert main(["bench", "--suite", str(path), "--out", str(out), *extra]) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()


def test_seeds_beyond_the_supported_range_are_refused_before_any_work(tmp_path: Path, capsys) -> None:
    path = _suite(tmp_path, 'methods = ["tp-magnitude"]\n').read_text().replace("seeds = [0]", "seeds = [99999999999999999999]")
    with pytest.raises(SuiteError):  # TOML cannot even hold it as an integer
        load_suite(str(_write(tmp_path, path)))
    out = tmp_path / "out"
    for argv in (["bench", "--suite", "ae-tiny", "--seeds", str(MAX_SEED + 1)],
                 ["bench", "--suite", "ae-tiny", "--seeds", "99999999999999999999", "--dry-run"]):
        assert main([*argv, "--out", str(out)]) == 2
        assert f"outside [0, {MAX_SEED}]" in capsys.readouterr().err
    assert not out.exists()


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "big.toml").write_text(text)
    return tmp_path / "big.toml"


option_values = st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=6) \
    | st.lists(st.sampled_from(["uniform", "greedy", "keep-inter", "x"]), max_size=3)


@FAST
@given(st.sampled_from(["grid", "grid-group", "gradient"]),
       st.dictionaries(st.sampled_from(sorted({*GridConfig.__dataclass_fields__, *GradientConfig.__dataclass_fields__})),
                       option_values, max_size=3))
def test_options_that_pass_the_check_build_the_config(method: str, options: dict) -> None:
    """Whatever the check accepts, the method's config accepts too (so a run cannot fail on it later)."""
    config = GradientConfig if method == "gradient" else GridConfig
    try:
        check_method_options(method, options)
    except ValueError as err:
        assert "\n" not in str(err)
        return
    built = config(**options)
    assert all(getattr(built, k) == (tuple(v) if isinstance(v, list) else v) for k, v in options.items())


def test_declared_types_are_read_like_toml_values() -> None:
    assert fits_type(3, float) and not fits_type(True, int) and fits_type(None, int | None)
    assert fits_type(["a", "b"], tuple[str, ...]) and not fits_type(["a", 1], tuple[str, ...])
    assert not fits_type("lots", int | None) and fits_type(2, int | None)
