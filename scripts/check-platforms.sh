#!/usr/bin/env bash
# Type-checks the client crates and the tray for macOS (aarch64-apple-darwin) and what builds
# for Windows today (x86_64-pc-windows-gnu), with warnings denied, so a change cannot break
# them unseen (issue 12 item 4). Uses Debian's Rust with -Zbuild-std (rustup here has no other
# targets and cannot download them) as ../shared/notes/cross-platform.md describes; installs
# it when missing. Run by scripts/test.sh; on its own: ./scripts/check-platforms.sh
#
# Not yet checked for Windows: vpd-daemon, vpd-cli and the tray (the local API's named pipe,
# file ACLs and the other Windows parts of issue 12 are not written yet); this script says so
# on every run. viewport-server is a Linux service and is checked for Linux only.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64)
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
  RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=target/cross RUSTFLAGS="-D warnings" DOCS_RS=1 \
    /usr/bin/cargo check -Zbuild-std=std,panic_abort --target "$target" --locked --quiet "$@" \
    --config "target.$target.ring_core_0_17_14_.rustc-link-lib=[]" \
    --config "target.$target.objc2_exception_helper_0_1.rustc-link-lib=[]"
}

status=0
check aarch64-apple-darwin -p vpd-core -p vpd-proto -p vpd-daemon -p vpd-cli || status=1
check aarch64-apple-darwin -p viewport-tray --bins || status=1
check x86_64-pc-windows-gnu -p vpd-core -p vpd-proto || status=1
echo "Not yet type-checked for Windows: vpd-daemon, vpd-cli, viewport-tray (issue 12: the named pipe, ACLs and the other Windows parts are not written yet)."
if [ $status -eq 0 ]; then echo "macOS: the client crates and the tray type-check. Windows: vpd-core and vpd-proto type-check."; fi
exit $status
