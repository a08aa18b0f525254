# Everything installs into .venv; torch is pinned to the CPU build that lies on this machine's disk
# (an unpinned torch would pull a multi-GB CUDA build). GPU users: pip install -e . into an env with torch.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0

.PHONY: install demo test test-avx2 test-slow bench clean

$(BIN)/modicl: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/modicl

# two seeds of the quick-p11 preset side by side, one thread each on 2 cores; prints each seed's phase,
# o.o.d.-test interval and algorithm fingerprint
demo: install
	rm -rf runs/demo
	$(BIN)/modicl sweep demo --out runs/demo --workers 2

# lint, format and type checks first (under a minute), then the suite
test: install
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# the tests whose outcome depends on training, on the AVX2-only code path (kernels, and Muon in fp32) that
# CPUs without AVX-512 take: a machine with AMX or AVX-512 checks what an AVX2-only user will see
AVX2 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
test-avx2: install
	$(AVX2) $(BIN)/python -m pytest -q tests/test_train.py tests/test_ensemble.py tests/test_pinned.py tests/test_science.py

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/modicl bench

clean:
	rm -rf $(VENV) runs sweeps .pytest_cache
