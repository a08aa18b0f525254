# Everything installs into .venv; torch is pinned to the CPU build that lies on this machine's disk
# (an unpinned torch would pull a multi-GB CUDA build). GPU users: pip install -e . into an env with torch.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0

.PHONY: install demo test test-slow bench clean

$(BIN)/modicl: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/modicl

# two seeds of the quick-muon preset side by side, one thread each (both cores); prints each seed's phase
demo: install
	rm -rf runs/demo
	$(BIN)/modicl sweep demo --out runs/demo --workers 2

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/modicl bench

clean:
	rm -rf $(VENV) runs sweeps .pytest_cache
