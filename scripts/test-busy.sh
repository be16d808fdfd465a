#!/usr/bin/env bash
# The tray and browser tests beside a CPU load (issue 11 item 10): the human-path tests must
# not depend on the machine being idle. Starts two busy workers per core (at the same
# priority as the tests), runs the tray tests under Xvfb and the browser tests, and stops
# the load whatever happens. Not part of .ci/run (it doubles their time); run it after
# ./scripts/test.sh has installed what the tests need:
#   ./scripts/test-busy.sh            (2 workers per core)
#   LOAD_PER_CORE=4 ./scripts/test-busy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

per_core="${LOAD_PER_CORE:-2}"
cores="$(nproc)"
workers=$((cores * per_core))
cargo build --workspace --bins --locked
pids=()
stop_load() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap stop_load EXIT
for _ in $(seq "$workers"); do
  ( while :; do :; done ) &
  pids+=($!)
done
echo "CPU load: $workers busy workers on $cores cores"
status=0
cargo nextest run -p vpd-e2e --locked --no-fail-fast --final-status-level fail --test browser || status=1
xvfb-run -a -s "-screen 0 1280x800x24" \
  cargo nextest run -p viewport-tray --locked --no-fail-fast --final-status-level fail -E 'kind(test)' || status=1
stop_load
if [ $status -eq 0 ]; then echo "The tray and browser tests passed beside the load."; fi
exit $status
