#!/usr/bin/env bash
# How long a repository cloned into a watched folder takes to raise its suggestion (issue 11
# item 4: "within 2 s"): the time from the start of `git clone` of a repository carrying
# .viewport/workspace.yaml into a watched folder until the daemon logs the suggestion (what
# the tray turns into its notification), for RUNS clones, against the clone alone (the
# floor: nothing can be announced before the files exist). Prints median and worst;
# docs/BENCHMARKS.md has the last run. Uses a release build of vpd and vpd-daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
cargo build --release --locked -p vpd-cli -p vpd-daemon --bins >/dev/null 2>&1 || cargo build --release --locked --bins
BIN="$PWD/target/release"
T=$(mktemp -d)
export HOME="$T/home" VPD_KEYRING=off VPD_UI_PORT=0 VPD_LOG=info
cleanup() { "$BIN/vpd" daemon stop >/dev/null 2>&1 || true; rm -rf "$T"; }
trap cleanup EXIT
mkdir -p "$HOME/code" "$T/src"
# The repository to clone: committed .viewport/workspace.yaml naming an org.
git -C "$T/src" init -q -b main repo
mkdir -p "$T/src/repo/.viewport"
printf 'org_id: 01J7M8N9P0Q1R2S3T4V5V6W7X8\norg_name: Acme\n' > "$T/src/repo/.viewport/workspace.yaml"
git -C "$T/src/repo" add -A && git -C "$T/src/repo" -c user.email=b@example.com -c user.name=b commit -qm hint
mkdir -p "$HOME/.viewport" && chmod 700 "$HOME/.viewport"
printf '{"version":2,"daemon":{"watchedFolders":["%s"]},"pairings":[]}\n' "$HOME/code" > "$HOME/.viewport/config.json"
chmod 600 "$HOME/.viewport/config.json"
"$BIN/vpd" daemon run >/dev/null 2>&1 &
sleep 1
ms() { date +%s%3N; }
announce=(); floor=()
for i in $(seq 1 "$RUNS"); do
  t0=$(ms)
  git clone -q "$T/src/repo" "$HOME/code/r$i"
  t1=$(ms)
  until grep -q "hint suggestion directory=$HOME/code/r$i " "$HOME"/.viewport/logs/* 2>/dev/null; do sleep 0.01; done
  t2=$(ms)
  floor+=($((t1 - t0))); announce+=($((t2 - t0)))
done
stats() { sort -n | awk '{a[NR]=$1} END {printf "median %d ms, worst %d ms", a[int((NR+1)/2)], a[NR]}'; }
echo "clone → suggestion ($RUNS clones): $(printf '%s\n' "${announce[@]}" | stats)"
echo "clone alone (floor):        $(printf '%s\n' "${floor[@]}" | stats)"
