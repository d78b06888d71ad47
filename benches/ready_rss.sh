#!/usr/bin/env bash
# Time to ready and resident memory of a sessiongate binary on a store that is already
# filled (issue 15: at most 150 MB RSS and 2 s to ready with 1M + 1M cutoffs):
#
#   benches/ready_rss.sh BINARY CONFIG OPS_ADDRESS
#
# OPS_ADDRESS is CONFIG's ops.listen (a fixed host:port). Starts `BINARY serve --config CONFIG`,
# polls /readyz until it answers 200, prints the time from start and VmRSS/VmHWM from
# /proc/<pid>/status, and stops the process it started. `cargo bench --bench scale` makes
# the same measurement on stores it fills itself; this script compares two binaries (a
# release build of main and of a branch) on one store.
set -euo pipefail

usage="usage: ready_rss.sh BINARY CONFIG OPS_ADDRESS"
binary=${1:?$usage}
config=${2:?$usage}
ops=${3:?$usage}

started=$(date +%s.%N)
"$binary" serve --config "$config" >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true' EXIT
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ops/readyz")" = 200 ]; do
    kill -0 "$pid" 2>/dev/null || { echo "$binary exited before ready" >&2; exit 1; }
    sleep 0.01
done
ready=$(date +%s.%N)
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
printf 'ready %.2f s after start; VmRSS %d MiB (peak %d MiB)\n' \
    "$(echo "$ready - $started" | bc)" $((rss / 1024)) $((hwm / 1024))
