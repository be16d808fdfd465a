#!/usr/bin/env bash
# Installs what the tests need and runs every test of the workspace (unit, integration and
# the end-to-end tests in tests/ against the real binaries). Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use. Installed only when missing (needs root or sudo).
packages=(git bash ca-certificates python3 dbus gnome-keyring libsecret-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing ${missing[*]}…"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "Installing cargo-nextest…"
  cargo install cargo-nextest --locked
fi

# The end-to-end tests run the real binaries: build them first.
cargo build --workspace --bins --locked
cargo nextest run --workspace --locked --no-fail-fast --final-status-level fail
