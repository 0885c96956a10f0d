# ctrlprune: `make bench` runs the main job, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl

.PHONY: bench test setup clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e ".[test,ray]"
	touch $(STAMP)

# A fresh run of the shipped suite into runs/ (the committed results/ were made by the same command with --out results).
BENCH_OUT ?= runs
bench: $(STAMP)
	$(BIN)/ctrlprune bench --suite ae --fresh --out $(BENCH_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
