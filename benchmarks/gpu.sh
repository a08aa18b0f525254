#!/usr/bin/env bash
# The GPU checks, each in its own process with its own time limit, each recorded to OUT/CHECK.json
# (and its output to OUT/CHECK.log) whatever the others do; OUT/status.txt has one exit code per check
# (124: stopped by its time limit, the JSON keeps what it measured). About 8 minutes in all on one
# H100/H200-class GPU (the limits below add up to 470 s); see benchmarks/gpu_checks.py for what each measures.
# Usage: bash benchmarks/gpu.sh [OUT_DIR] [--device cpu --tiny] [--no-compile]
#   (default OUT_DIR: ${OUT:-bench-gpu}; `--device cpu --tiny` is the dry run the test suite makes)
set -u
out="${1:-${OUT:-bench-gpu}}"
shift || true
mkdir -p "$out"
py=${PYTHON:-python}
here=$(cd "$(dirname "$0")" && pwd)
if ! $py -c "import modicl" 2>/dev/null; then
  $py -m pip install --quiet -e "$here/.." # keeps the machine's CUDA torch
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/nvidia-smi.txt" 2>&1 || true
: > "$out/status.txt"
scale=1
case " $* " in *" --tiny "*) scale=4 ;; esac # the CPU dry run: slower per step, and the machine may be shared
# check:limit in seconds; the compiled checks come first so later ones reuse Inductor's on-disk cache
for spec in versions:30 single-d2:100 single-d6:110 quick-ensemble:90 paper-ensemble:90 resume:50; do
  check=${spec%%:*}
  limit=$(( ${spec##*:} * scale ))
  start=$(date +%s)
  timeout -k 10 "$limit" $py "$here/gpu_checks.py" "$check" --out "$out" "$@" > "$out/$check.log" 2>&1
  rc=$?
  echo "$check rc=$rc seconds=$(( $(date +%s) - start ))" | tee -a "$out/status.txt"
done
echo "results in $out"
