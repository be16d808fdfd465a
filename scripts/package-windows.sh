#!/usr/bin/env bash
# Builds the Windows installer (issue 12 item 6): src-tauri/windows/installer.nsi with Debian's
# NSIS around the binaries scripts/build-windows.sh made (or BINDIR), into
# target/cross/viewport-VERSION-setup.exe. tests/wine.rs installs and uninstalls it under Wine.
# Usage: scripts/package-windows.sh [BINDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v makensis >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing nsis (makensis, for the Windows installer)…"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nsis >/dev/null
fi
bindir="${1:-target/cross/x86_64-pc-windows-gnu/debug}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
out="target/cross/viewport-$version-setup.exe"
# A release is compressed with LZMA; the tests' debug build with zlib (a minute faster here).
compressor="lzma"; [[ "$bindir" == */debug* ]] && compressor="zlib"
makensis -V2 -X"SetCompressor /SOLID /FINAL $compressor" -DVERSION="$version" -DBINDIR="$(realpath "$bindir")" -DOUTFILE="$(realpath -m "$out")" src-tauri/windows/installer.nsi
echo "Windows installer: $out"
