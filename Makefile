PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install: pip runs again only when pyproject.toml is newer.
STAMP := $(VENV)/.installed

.PHONY: venv run test check loadtest

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[local,dev]'
	touch $(STAMP)

run: venv
	$(BIN)/python -m devstack

# .ci/system-packages installs what the tests need from Debian (nginx, chromium) where it can
# (root and apt-get); elsewhere the tests that need them skip, saying why (fail under CI=true).
test: venv
	bash .ci/system-packages
	$(BIN)/python -m pytest

check: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# Starts the stack with 2 gateways, load-tests both, always stops the stack (loadtest/stack.py).
# A quick smoke run; it ends by saying how to run the bigger shapes (crowd, soak, k6).
LOADTEST_ARGS ?= --users 200 --window 5 --messages 100
loadtest: venv
	$(BIN)/python -m loadtest.stack -- $(LOADTEST_ARGS)

# The k6 scenario (loadtest/k6/chat.js) against a fresh 2-gateway stack: K6_ARGS="-e VUS=200".
K6_ARGS ?= -e VUS=20 -e SEND_SECONDS=20
.PHONY: loadtest-k6
loadtest-k6: venv
	$(BIN)/python -m loadtest.stack --k6 $(K6_ARGS)

# One comparison run (docs/PERFORMANCE.md): installs the bench extras (python-socketio) and, on
# first use, soketi into bench/soketi/node_modules. BENCH_ARGS="--quick" for a smoke run.
.PHONY: bench
bench: venv
	$(BIN)/python -m pip install -q -e '.[local,dev,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)
