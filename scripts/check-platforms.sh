#!/usr/bin/env bash
# Type-checks every client crate (vpd-core, vpd-proto, vpd-daemon, vpd-cli) and both desktop
# binaries (viewport-tray, viewport-window) for macOS (aarch64-apple-darwin) and Windows
# (x86_64-pc-windows-gnu) with clippy and every warning denied, so a change cannot break them
# unseen (issue 12 item 4). Uses Debian's Rust and clippy with -Zbuild-std (rustup here has no
# other targets and cannot download them) as ../shared/notes/cross-platform.md describes;
# installs them when missing. Run by scripts/test.sh; on its own: ./scripts/check-platforms.sh
#
# viewport-server is a Linux service and is checked for Linux only.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing ${missing[*]} (Debian's Rust, for the cross-platform type checks)…"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

check() {
  local target="$1"; shift
  echo "Type-checking for $target: $*"
  # ring's and objc2-exception-helper's C cannot compile without the macOS SDK; nothing is
  # linked by a check, so their build scripts are skipped (the `links` overrides), and
  # mac-notification-sys skips its Objective-C when DOCS_RS is set.
  # Debian's cargo finds Debian's cargo-clippy first on this PATH (rustup's has no targets).
  PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=target/cross DOCS_RS=1 \
    /usr/bin/cargo clippy -Zbuild-std=std,panic_abort --target "$target" --locked --quiet "$@" \
    --config "target.$target.ring_core_0_17_14_.rustc-link-lib=[]" \
    --config "target.$target.objc2_exception_helper_0_1.rustc-link-lib=[]" -- -D warnings
}

status=0
for target in aarch64-apple-darwin x86_64-pc-windows-gnu; do
  check "$target" -p vpd-core -p vpd-proto -p vpd-daemon -p vpd-cli || status=1
  check "$target" -p viewport-tray --bins || status=1
done
if [ $status -eq 0 ]; then echo "macOS and Windows: the client crates, viewport-tray and viewport-window type-check (clippy, warnings denied)."; fi
exit $status
