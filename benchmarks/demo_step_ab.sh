#!/usr/bin/env bash
# The demo preset's training step, older code against this checkout, in alternating rounds on one machine
# (BENCHMARKS.md, "The demo preset's step, before and after"): ratios measured this way hold across CPUs
# of one kind even where absolute rates drift. Each round runs, one after another, 400 steps of the
# quick-p11 model and optimizer (quick-muon at p 11, n_ctx 32, n_id 64: the settings the older code also
# has) at one thread with:
#   old      OLD_REV, eager (the speed issue's filing by default)
#   eager    this checkout, eager
#   compiled this checkout, --train.compile on (checked against eager on its first batch)
# and prints steps/s = 400 / train_s of each run's summary.json (the first step, compilation included, is
# inside train_s). Run it on quiet cores: anything else running changes the rates.
#
#   benchmarks/demo_step_ab.sh [ROUNDS=3] [OLD_REV=449982a]
set -euo pipefail
rounds=${1:-3}
old=${2:-449982a}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/old"
git -C "$root" archive "$old" src | tar -x -C "$tmp/old"
args=(train --preset quick-muon --task.p 11 --task.n-ctx 32 --task.n-id 64 --train.steps 400
      --train.eval-every 400 --train.eval-sequences 64 --train.threads 1 --seed 1 --no-progress)
rate() { python -c "import json, sys; print(f'{400 / json.load(open(sys.argv[1]))[\"train_s\"]:.2f}')" "$1/summary.json"; }
printf 'round\told (%s)\teager\tcompiled\n' "$old"
for r in $(seq "$rounds"); do
    PYTHONPATH="$tmp/old/src" python -m modicl "${args[@]}" --out "$tmp/old-$r" >/dev/null
    python -m modicl "${args[@]}" --out "$tmp/eager-$r" >/dev/null
    python -m modicl "${args[@]}" --train.compile on --out "$tmp/compiled-$r" >/dev/null
    printf '%s\t%s\t%s\t%s\n' "$r" "$(rate "$tmp/old-$r")" "$(rate "$tmp/eager-$r")" "$(rate "$tmp/compiled-$r")"
done
