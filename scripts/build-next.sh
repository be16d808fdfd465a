#!/usr/bin/env bash
# Builds `vpd` and `vpd-daemon` once more, reporting a higher version (VPD_BUILD_VERSION), for
# the `vpd update` end-to-end tests (tests/update.rs): the release they publish and install.
# Its own target directory (target/next), so the normal build is never rebuilt by it: the
# first run compiles the dependencies once, later runs rebuild only what changed.
# Usage: scripts/build-next.sh [VERSION]   (default 0.99.0)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-0.99.0}"
VPD_BUILD_VERSION="$version" cargo build --locked --quiet -p vpd-cli -p vpd-daemon --bins --target-dir target/next
echo "target/next/debug/vpd: $(target/next/debug/vpd --version)"
