"""Suite configs: shipped suites parse, malformed ones fail with a message naming the field."""
import pytest

from benchmarks.sweep.suite import SuiteError, load_suite, parse_suite, shipped_suites

MODELS = ["ae", "tdmpc-<task>"]
METHODS = ["tp-magnitude", "gradient"]
BASE = {"name": "s", "model": "ae", "methods": ["gradient"]}


def test_defaults_fill_in() -> None:
    suite = parse_suite(dict(BASE), MODELS, METHODS)
    assert suite.sparsities == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9) and suite.seeds == (0, 1, 2)
    assert suite.eps == 0.01 and suite.latent_prunable == (True,)


def test_task_family_models_are_known() -> None:
    assert parse_suite({**BASE, "model": "tdmpc-cartpole-swingup"}, MODELS, METHODS).model == "tdmpc-cartpole-swingup"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sparsities": [0.2, 1.0]}, r"sparsities\[1\] 1.0 is outside \[0, 1\)"),
        ({"sparsities": [-0.1]}, "outside"),
        ({"methods": ["magic"]}, r"unknown method\(s\) \['magic'\]; valid methods: \['tp-magnitude', 'gradient'\]"),
        ({"model": "resnet"}, "unknown model 'resnet'; valid models"),
        ({"eps": 0}, "eps 0.0 must lie in"),
        ({"seeds": ["a"]}, r"seeds\[0\]' must be int"),
        ({"seeds": []}, "non-empty list"),
        ({"sparsity": [0.1]}, r"unknown suite field\(s\) \['sparsity'\]; valid fields"),
        ({"workers": True}, "'workers' must be int"),
        ({"method_options": {"grid": {"budget": 3}}}, "not in methods"),
        ({"name": "a b"}, "suite name"),
    ],
)
def test_malformed_fields_are_named(change: dict, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        parse_suite({**BASE, **change}, MODELS, METHODS)


def test_missing_required_field() -> None:
    with pytest.raises(SuiteError, match=r"missing required field\(s\) \['methods'\]"):
        parse_suite({"name": "s", "model": "ae"}, MODELS, METHODS)


def test_unknown_suite_lists_shipped_ones(tmp_path) -> None:
    with pytest.raises(SuiteError, match="shipped suites"):
        load_suite("nope", MODELS, METHODS)
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(SuiteError, match="not valid TOML"):
        load_suite(str(bad), MODELS, METHODS)


def test_shipped_suites_are_valid() -> None:
    from benchmarks.sweep.suite import registered_names

    for name in shipped_suites():
        load_suite(name, *registered_names())
