#!/usr/bin/env bash
# LASER's balance/quality frontier on the shipped model: `moeserve-cli eval` under vanilla and under LASER
# for pool sizes c and mass thresholds eps_high, on the same held-out inputs, collated into one Markdown table.
# Usage: scripts/laser-sweep.sh [out.md]   (needs data/, see docs/training.md; about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/routing/laser-sweep.md}
work=$(mktemp -d)
dotnet build src/Cli -c Release -v q -nologo >/dev/null
run() { dotnet run --project src/Cli -c Release --no-build -- eval --model models/moeserve-moe-tiny --max-docs 50 "$@" 2>/dev/null; }
run --policy vanilla --json "$work/vanilla.json" >/dev/null
for c in 3 4; do
  for eps in 0.5 0.6 0.7 0.9; do
    echo "laser c=$c eps_high=$eps ..." >&2
    run --policy laser --laser-pool "$c" --laser-eps-high "$eps" --json "$work/laser_c${c}_e${eps}.json" >/dev/null
  done
done
python3 scripts/laser_sweep_table.py "$work" > "$out"
cat "$out"
