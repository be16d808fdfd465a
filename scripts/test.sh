#!/usr/bin/env bash
# Installs what the tests need and runs every test: the workspace's unit, integration and
# end-to-end tests (real binaries on loopback), the web UI in headless Chromium, and the tray
# app under Xvfb with a private D-Bus session. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: building the tray (Tauri: WebKitGTK, GTK, appindicator) and running the
# tests (Xvfb, D-Bus, a status-notifier watcher, gnome-keyring, Chromium, ImageMagick for
# screenshots, Node.js for playwright-core). Installed only when missing (root or sudo).
packages=(git bash ca-certificates python3 build-essential pkg-config file
  libwebkit2gtk-4.1-dev libjavascriptcoregtk-4.1-dev libsoup-3.0-dev libgtk-3-dev
  libayatana-appindicator3-dev librsvg2-dev libxdo-dev libdbus-1-dev
  xvfb xauth imagemagick xdg-utils dbus gnome-keyring libsecret-tools keyutils at-spi2-core
  haskell-status-notifier-item-utils chromium xdotool postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing ${missing[*]}…"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "Installing cargo-nextest…"
  cargo install cargo-nextest --locked
fi

# playwright-core drives Debian's /usr/bin/chromium (no browser download).
npm ci --prefix tests/browser --no-audit --no-fund --silent

status=0
for tool in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$tool"; then
    echo "Installing the $tool component…"; rustup component add "$tool"
  fi
done
# Style gate: formatting (rustfmt.toml) and every clippy lint as an error, over every crate
# and target, the tray included. A failure here fails the run, after the tests have run.
if ! cargo fmt --all --check >/dev/null; then
  echo "Style: code is not formatted; run \`cargo fmt --all\` (cargo fmt --all --check shows where)." >&2
  status=1
fi
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings || { echo "Style: clippy found problems (above)." >&2; status=1; }

# macOS and Windows: the code compiled for them must type-check on every change (issue 12
# item 4; which crates, and what is not checked yet, in the script).
./scripts/check-platforms.sh || { echo "Platforms: a crate no longer type-checks for macOS or Windows (above)." >&2; status=1; }
# The Windows build of vpd and vpd-daemon, which tests/wine.rs runs under Wine (issue 12 item 5).
./scripts/build-windows.sh || { echo "Windows: vpd.exe does not build (above)." >&2; status=1; }

# The end-to-end tests run the real binaries (vpd, viewport-server, viewport-tray): build
# them first. `vpd update`'s tests also install a higher version: the same vpd and
# vpd-daemon reporting 0.99.0, built in target/next (its own target directory, so neither
# build undoes the other).
cargo build --workspace --bins --locked
./scripts/build-next.sh
# PostgreSQL for the store suite and the several-instances tests (issue 14): one private
# cluster (initdb into a temporary directory, as nobody when root, a free loopback port),
# stopped and removed when this script ends; each test makes databases of its own in it.
pg_dir="$(mktemp -d /tmp/vpd-test-pg.XXXXXX)"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
pg_as=(); [ "$(id -u)" -eq 0 ] && { chown nobody:nogroup "$pg_dir"; pg_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups --); }
pg_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"${pg_as[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
"${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" start >/dev/null
trap '"${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$pg_dir"' EXIT
export VIEWPORT_TEST_PG="postgres://postgres@127.0.0.1:$pg_port/postgres"
# Everything but the tray: no display, no session bus (the keyring tests make their own).
cargo nextest run --workspace --locked --no-fail-fast --final-status-level fail \
  -E 'not (package(viewport-tray) & kind(test))' || status=1
# The end-to-end suite again with every server as two instances on one PostgreSQL behind the
# harness's round-robin balancer (VPD_TEST_BALANCED=1; issue 14): the test files that do not
# reach into a server's SQLite file (and not the minute-long outage, run above).
VPD_TEST_BALANCED=1 cargo nextest run -p vpd-e2e --locked --no-fail-fast --final-status-level fail \
  --test pairing --test bindings --test revocation --test streaming --test quotas --test concurrency \
  --test faults --test hostile_relay --test cli -E 'not test(platform_down_for_a_minute)' || status=1
# The tray under Xvfb (each test starts its own D-Bus session bus with a status-notifier
# watcher and a fake notification service on it).
xvfb-run -a -s "-screen 0 1280x800x24" \
  cargo nextest run -p viewport-tray --locked --no-fail-fast --final-status-level fail \
  -E 'kind(test)' || status=1
echo "Screenshots: target/artifacts/ui/ (web UI), target/artifacts/tray/ (tray window)"
exit $status
