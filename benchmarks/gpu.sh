#!/usr/bin/env bash
# GPU checks of issues 3 and 4 in one call (< 5 minutes on one H100/H200-class GPU):
#   1. single-run throughput and MFU of the paper config (p 29, d_model 512, bs 1024, n_ctx 32) and of
#      the reference config, bf16 with torch.compile (the CUDA default) and fp32;
#   2. ensemble gain: member-steps/s of a 16- and a 64-member vmap ensemble of the quick architecture
#      against one model alone (goal ≥ 10×).
# Usage: bash benchmarks/gpu.sh [OUT_DIR]   (writes JSON files there; default: ${OUT:-bench-gpu})
set -euo pipefail
out="${1:-${OUT:-bench-gpu}}"
mkdir -p "$out"
py=${PYTHON:-python}
if ! $py -c "import modicl" 2>/dev/null; then
  $py -m pip install --quiet -e . # keeps the machine's CUDA torch
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
run() { local name=$1; shift; echo "== $name: modicl bench $*"; timeout 240 $py -m modicl bench "$@" | tee "$out/$name.json"; }
run paper --preset paper --steps 20 --dtypes bf16 fp32
run reference --preset bench --steps 50 --dtypes bf16 fp32
run ensemble16 --preset quick --ensemble 16 --steps 20 --dtypes bf16
run ensemble64 --preset quick --ensemble 64 --steps 10 --dtypes bf16
echo "results in $out"
