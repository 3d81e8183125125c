#!/usr/bin/env bash
# LASER's balance/quality frontier on the shipped model: `moeserve-cli eval` under vanilla and under LASER
# for pool sizes c and mass thresholds eps_high, on the same held-out inputs, collated into one Markdown table.
# Usage: scripts/laser-sweep.sh [out.md]   (needs data/, see docs/training.md; about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/routing/laser-sweep.md}
work=$(mktemp -d)
dotnet build src/Cli -c Release -v q -nologo >/dev/null
# Each run's log goes to the work folder; a failing run stops the sweep and shows its log.
run() {
  local name=$1; shift
  dotnet run --project src/Cli -c Release --no-build -- eval --model models/moeserve-moe-tiny --max-docs 50 --json "$work/$name.json" "$@" \
    >"$work/$name.md" 2>"$work/$name.log" || { echo "eval $name failed:" >&2; tail -n 20 "$work/$name.log" >&2; exit 1; }
}
run vanilla --policy vanilla
for c in 3 4; do
  for eps in 0.5 0.6 0.7 0.9; do
    echo "laser c=$c eps_high=$eps ..." >&2
    run "laser_c${c}_e${eps}" --policy laser --laser-pool "$c" --laser-eps-high "$eps"
  done
done
python3 scripts/laser_sweep_table.py "$work" > "$out"
cat "$out"
