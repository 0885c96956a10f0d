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

# Fresh runs of the shipped AE suite and the quick TD-MPC suite into runs/ (the committed results/ were made
# by the same commands with --out results; the full TD-MPC suites are tdmpc-<task>).
BENCH_OUT ?= runs
bench: $(STAMP)
	@start=$$(date +%s); \
	$(BIN)/ctrlprune bench --suite ae --fresh --out $(BENCH_OUT) && \
	$(BIN)/ctrlprune bench --suite tdmpc-quick --fresh --out $(BENCH_OUT) && \
	echo "make bench: both suites took $$(( $$(date +%s) - start )) s of wall time on $$(nproc) cores."
	@echo "make bench ran the full 'ae' suite and the QUICK TD-MPC suite 'tdmpc-quick' (2 levels, 1 seed, 3 episodes)."
	@echo "Fresh results: $(BENCH_OUT)/ae, $(BENCH_OUT)/tdmpc-quick. Committed full results: results/ (see README)."

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
