#!/usr/bin/env bash
# Mixed-load soak (tests/soak.rs, not in CI): 200 clients for 60 s across two instances
# on one Redis, with logout-alls and back-channel logouts during the load; every answer
# predicted by a model. Prints request, logout and signal rates and latencies; fails on
# any 5xx or wrong answer. Needs redis-server.
#
#   bash benches/soak.sh                          # SOAK_CLIENTS=200 SOAK_SECS=60
#   SOAK_CLIENTS=50 SOAK_SECS=10 bash benches/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK_CLIENTS=${SOAK_CLIENTS:-200} SOAK_SECS=${SOAK_SECS:-60}
cargo test --release --test soak -- --ignored --nocapture
