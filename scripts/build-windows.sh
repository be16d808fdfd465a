#!/usr/bin/env bash
# Cross-builds `vpd.exe` and `vpd-daemon.exe` for x86_64-pc-windows-gnu (Debian's Rust with
# -Zbuild-std, linked by mingw-w64) and the one-function stand-in DLL Wine 8 needs
# (`ProcessPrng`, ../shared/notes/cross-platform.md), for the Wine test (tests/wine.rs, run by
# scripts/test.sh). Installs Wine and the toolchain when missing. Output:
# target/cross/x86_64-pc-windows-gnu/debug/{vpd,vpd-daemon,viewport-tray}.exe and
# target/cross/wine/bcryptprimitives.dll.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64 wine64)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing ${missing[*]} (the Windows build and Wine)…"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=target/cross \
  /usr/bin/cargo build -Zbuild-std=std,panic_abort --target x86_64-pc-windows-gnu --locked --quiet \
  -p vpd-cli -p vpd-daemon --bins --config 'target.x86_64-pc-windows-gnu.linker="x86_64-w64-mingw32-gcc"'
# The tray (its icon in the notification area, the daemon core in-process; tests/wine.rs
# starts it in Wine's desktop). Not the window: it needs WebView2, which Wine does not have.
RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=target/cross \
  /usr/bin/cargo build -Zbuild-std=std,panic_abort --target x86_64-pc-windows-gnu --locked --quiet \
  -p viewport-tray --bin viewport-tray --config 'target.x86_64-pc-windows-gnu.linker="x86_64-w64-mingw32-gcc"'

mkdir -p target/cross/wine
shim=target/cross/wine/shim.c
cat > "$shim" <<'C'
/* Wine 8.0 lacks ProcessPrng (bcryptprimitives.dll), which today's Rust std calls before
   main: this stands in for it with RtlGenRandom. Only for running the tests under Wine. */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) { return RtlGenRandom(data, (ULONG)len); }
C
x86_64-w64-mingw32-gcc -shared -o target/cross/wine/bcryptprimitives.dll "$shim" -ladvapi32
echo "Windows build: target/cross/x86_64-pc-windows-gnu/debug/vpd.exe, vpd-daemon.exe, viewport-tray.exe; Wine's stand-in DLL: target/cross/wine/bcryptprimitives.dll"

# The installer around them (tests/wine.rs installs and uninstalls it).
./scripts/package-windows.sh
