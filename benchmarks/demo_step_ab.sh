#!/usr/bin/env bash
# The demo preset's training step, older code against this checkout, in alternating rounds on one machine
# (BENCHMARKS.md, "The demo preset's step, before and after"): ratios measured this way hold across CPUs
# of one kind even where absolute rates drift. Each round runs, one after another, 400 steps of the
# quick-p11 model and optimizer (quick-muon at p 11, n_ctx 32, n_id 64: the settings the older code also
# has) at one thread with:
#   old      each of OLD_REVS (comma-separated git revisions; the speed issue's filing by default), eager
#   eager    this checkout (its working tree), eager
#   compiled this checkout, --train.compile on (checked against eager on its first batch); left out when
#            COMPILED=0 is set
# and prints steps/s = 400 / train_s of each run's summary.json (the first step, compilation included, is
# inside train_s). Run it on quiet cores: anything else running changes the rates.
#
#   benchmarks/demo_step_ab.sh [ROUNDS=3] [OLD_REVS=449982a]
#   COMPILED=0 benchmarks/demo_step_ab.sh 4 449982a,HEAD      # the filing, the last commit, the working tree
set -euo pipefail
rounds=${1:-3}
IFS=, read -r -a olds <<<"${2:-449982a}"
compiled=${COMPILED:-1}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in "${!olds[@]}"; do
    mkdir -p "$tmp/old$i"
    git -C "$root" archive "${olds[$i]}" src | tar -x -C "$tmp/old$i"
done
args=(train --preset quick-muon --task.p 11 --task.n-ctx 32 --task.n-id 64 --train.steps 400
      --train.eval-every 400 --train.eval-sequences 64 --train.threads 1 --seed 1 --no-progress)
rate() { python -c "import json, sys; print(f'{400 / json.load(open(sys.argv[1]))[\"train_s\"]:.2f}')" "$1/summary.json"; }
header=round
for o in "${olds[@]}"; do header+=$'\t'"old ($o)"; done
header+=$'\teager'
[ "$compiled" = 0 ] || header+=$'\tcompiled'
printf '%s\n' "$header"
for r in $(seq "$rounds"); do
    line=$r
    for i in "${!olds[@]}"; do
        PYTHONPATH="$tmp/old$i/src" python -m modicl "${args[@]}" --out "$tmp/old$i-$r" >/dev/null
        line+=$'\t'$(rate "$tmp/old$i-$r")
    done
    PYTHONPATH="$root/src" python -m modicl "${args[@]}" --out "$tmp/eager-$r" >/dev/null
    line+=$'\t'$(rate "$tmp/eager-$r")
    if [ "$compiled" != 0 ]; then
        PYTHONPATH="$root/src" python -m modicl "${args[@]}" --train.compile on --out "$tmp/compiled-$r" >/dev/null
        line+=$'\t'$(rate "$tmp/compiled-$r")
    fi
    printf '%s\n' "$line"
done
