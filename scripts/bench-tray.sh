#!/usr/bin/env bash
# The tray's numbers for docs/BENCHMARKS.md: a release build under Xvfb, with its own D-Bus
# session bus and status-notifier watcher (the packages scripts/test.sh installs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p vpd-cli -p vpd-daemon -p viewport-server -p viewport-tray
xvfb-run -a -s "-screen 0 1280x800x24" cargo bench --locked -p viewport-tray --bench tray
