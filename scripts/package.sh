#!/usr/bin/env bash
# Builds the desktop packages: a .deb and an AppImage (Linux), each with the tray app and
# `vpd` and `vpd-daemon` next to it (Tauri's externalBin). macOS (.app/.dmg) and Windows (.msi/NSIS) are
# configured in tauri.conf.json but must be built on those systems.
#
#   ./scripts/package.sh            # deb + appimage
#   ./scripts/package.sh deb        # only the .deb
set -euo pipefail
cd "$(dirname "$0")/.."
targets="${1:-deb,appimage}"

# `vpd` and the daemon it starts (`vpd-daemon`) go in as external binaries, named with the
# target triple as Tauri expects.
cargo build --release --locked --bin vpd-daemon
triple="$(rustc -vV | sed -n 's/^host: //p')"
mkdir -p target/externals
# On Linux `vpd` is linked statically: the shell hook runs it at every prompt, and a static
# binary starts in half the time (docs/DECISIONS.md, "A static vpd").
source scripts/static-vpd.sh
cp "$(build_static_vpd)" "target/externals/vpd-$triple"
cp target/release/vpd-daemon "target/externals/vpd-daemon-$triple"

if ! cargo tauri --version >/dev/null 2>&1; then
  echo "Installing tauri-cli…"
  cargo install tauri-cli --version '^2' --locked
fi
# The AppImage step downloads linuxdeploy from GitHub the first time; the .deb needs nothing.
cargo tauri build --bundles "$targets" --config src-tauri/bundle.json -- -p viewport-tray
ls -l target/release/bundle/*/ 2>/dev/null || true
