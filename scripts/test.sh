#!/usr/bin/env bash
# Runs every MoeServe test on a fresh Debian 12 machine: installs the real components the tests drive
# (Prometheus, headless Chromium), then `dotnet test`. The reference fixtures the numerics tests compare
# against are committed; regenerating them (scripts/reference) needs Debian's python3-torch, the tests do not.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

log=$(mktemp)
status=0
dotnet test MoeServe.sln -c Release 2>&1 | tee "$log" || status=$?

# One closing line in the plain "N passed, N failed" form, summed over the test projects.
sum() { grep -oE "$1: +[0-9]+" "$log" | awk '{ n += $2 } END { print n + 0 }'; }
passed=$(sum Passed); failed=$(sum Failed); skipped=$(sum Skipped)
echo "tests: ${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit $status
