# `make quickstart`, `make test` and `make test-all` set up what is missing (.venv from requirements.txt; test-all
# adds requirements-cluster.txt), then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
CLUSTER_STAMP := $(VENV)/.cluster-$(shell cksum requirements-cluster.txt | cut -d' ' -f1)

.PHONY: quickstart test test-all setup clean
setup: $(STAMP)

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), f"Python 3.11+ needed, found {sys.version}"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

$(CLUSTER_STAMP): requirements-cluster.txt $(STAMP)
	$(BIN)/python -m pip install -q -r requirements-cluster.txt
	rm -f $(VENV)/.cluster-* && touch $(CLUSTER_STAMP)

quickstart: $(STAMP)
	$(BIN)/python -m sweeps run sweeps/configs/quickstart.yaml

# The fast tier (tests/conftest.py: not marked slow); it needs no cluster packages.
test: $(STAMP)
	$(BIN)/python -m pytest -q tests -m "not slow" -n auto --maxprocesses=4 --dist loadfile --durations=20

# CI (.ci/run): the fast tier, then the slow one (real kills, Ray and submitit, several processes, corpora).
test-all: test $(CLUSTER_STAMP)
	$(BIN)/python -m pytest -q tests -m slow -n auto --maxprocesses=4 --dist loadfile --durations=20

clean:
	rm -rf runs .pytest_cache
